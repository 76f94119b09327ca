"""Batch-level augmentation on tensors, vectorised so it runs as fast on a GPU as the model.

Per-sample PIL transforms would cost more than the model itself on two CPU cores; here every
op is a handful of tensor ops over the whole batch.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from product_classifier.config import AugmentConfig


def random_crop(
    x: torch.Tensor, padding: int, gen: torch.Generator | None, fill: float = 0.0
) -> torch.Tensor:
    """Pad by ``padding`` with the background ``fill`` and crop back at a random offset."""
    if padding <= 0:
        return x
    n, _, h, w = x.shape
    padded = F.pad(x, (padding, padding, padding, padding), value=fill)
    offsets = torch.randint(0, 2 * padding + 1, (2, n), generator=gen, device="cpu").to(x.device)
    rows = offsets[0, :, None] + torch.arange(h, device=x.device)  # [n, h]
    cols = offsets[1, :, None] + torch.arange(w, device=x.device)  # [n, w]
    batch = torch.arange(n, device=x.device)[:, None, None]
    # Channels last for the gather, so one index expression crops every channel.
    out = padded.permute(0, 2, 3, 1)[batch, rows[:, :, None], cols[:, None, :]]
    return out.permute(0, 3, 1, 2).contiguous()


def random_hflip(x: torch.Tensor, gen: torch.Generator | None) -> torch.Tensor:
    flip = (torch.rand(x.shape[0], generator=gen) < 0.5).to(x.device)
    return torch.where(flip[:, None, None, None], x.flip(-1), x)


def random_rotation(
    x: torch.Tensor,
    degrees: float,
    gen: torch.Generator | None,
    scale: float = 0.0,
    fill: float = 0.0,
) -> torch.Tensor:
    """Rotate by up to ``degrees`` and zoom by up to ``scale`` (per sample, background ``fill``)."""
    if degrees <= 0 and scale <= 0:
        return x
    n = x.shape[0]
    angles = (torch.rand(n, generator=gen) * 2 - 1) * math.radians(degrees)
    zoom = 1 + (torch.rand(n, generator=gen) * 2 - 1) * scale  # >1 shrinks the item
    cos, sin = torch.cos(angles) * zoom, torch.sin(angles) * zoom
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0], theta[:, 0, 1], theta[:, 1, 0], theta[:, 1, 1] = cos, -sin, sin, cos
    grid = F.affine_grid(theta.to(x.device, x.dtype), list(x.shape), align_corners=False)
    # grid_sample pads with zeros: shift so that the background is what it pads with.
    out = F.grid_sample(x - fill, grid, align_corners=False, padding_mode="zeros")
    return out + fill


def random_brightness(x: torch.Tensor, amount: float, gen: torch.Generator | None) -> torch.Tensor:
    if amount <= 0:
        return x
    factor = 1 + (torch.rand(x.shape[0], generator=gen) * 2 - 1) * amount
    return (x * factor.to(x.device, x.dtype)[:, None, None, None]).clamp_(0, 1)


def random_colour(
    x: torch.Tensor, grayscale: float, channel_jitter: float, gen: torch.Generator | None
) -> torch.Tensor:
    """RGB only: turn a sample grey with probability ``grayscale``, and scale each channel by
    up to +-``channel_jitter`` (a catalog's colours vary by supplier, its shapes don't)."""
    if x.shape[1] != 3 or (grayscale <= 0 and channel_jitter <= 0):
        return x
    n = x.shape[0]
    if channel_jitter > 0:
        factors = 1 + (torch.rand(n, 3, generator=gen) * 2 - 1) * channel_jitter
        # Scale the distance from white, so the page stays white.
        x = 1 - (1 - x) * factors.to(x.device, x.dtype)[:, :, None, None]
    if grayscale > 0:
        weights = torch.tensor([0.299, 0.587, 0.114], device=x.device, dtype=x.dtype)
        grey = (x * weights[None, :, None, None]).sum(1, keepdim=True).expand_as(x)
        pick = (torch.rand(n, generator=gen) < grayscale).to(x.device)
        x = torch.where(pick[:, None, None, None], grey, x)
    return x.clamp(0, 1)


def _dilate(x: torch.Tensor, k: int) -> torch.Tensor:
    return F.max_pool2d(x, k, stride=1, padding=k // 2) if k > 1 else x


def _erode(x: torch.Tensor, k: int) -> torch.Tensor:
    return -F.max_pool2d(-x, k, stride=1, padding=k // 2) if k > 1 else x


def _pick(n: int, probability: float, gen: torch.Generator | None) -> torch.Tensor | None:
    """Which of ``n`` samples to redraw (each with ``probability``); None: none of them."""
    if probability <= 0:
        return None
    pick = torch.rand(n, generator=gen) < probability
    return pick if pick.any() else None


def random_style(x: torch.Tensor, probability: float, gen: torch.Generator | None) -> torch.Tensor:
    """Fashion-MNIST photos redrawn the way shop pictures are drawn (bright item on dark).

    A shop's picture, after the shared preprocessing, is often not a shaded photograph but a
    flat silhouette, a line drawing or a silhouette with its seams drawn in. With probability
    ``probability`` a sample becomes one of (equally likely):

    - **silhouette**: the item's mask (holes closed) at one flat brightness;
    - **outline**: the mask's edge, 1-3 px wide (outline icons);
    - **drawn**: the silhouette with the photo's own strong edges drawn dark into it;
    - **gradient**: the silhouette lit by a linear gradient (shaded clip art);
    - **stroked**: a dim fill inside a bright 1-3 px outline. A colour icon drawn with a dark
      stroke around a lighter fill becomes exactly that once the page is inverted (most of
      the emoji in the real-picture benchmark's dev part look so after ``canonicalize``).

    Then the item's peak is stretched back to 1, as ``canonicalize`` does for uploads.
    """
    pick = _pick(x.shape[0], probability, gen)
    if pick is None:
        return x
    n = x.shape[0]
    style = torch.randint(0, 5, (n,), generator=gen)
    level = 0.55 + 0.45 * torch.rand(n, generator=gen)
    width = torch.randint(1, 4, (n,), generator=gen)
    threshold = 0.04 + 0.12 * torch.rand(n, generator=gen)
    dev = x.device
    mask = (x > threshold.to(dev)[:, None, None, None]).to(x.dtype)
    mask = _erode(_dilate(mask, 3), 3)  # close the small holes of dark fabric
    silhouette = mask * level.to(dev, x.dtype)[:, None, None, None]
    outlines = [
        (mask - _erode(mask, 2 * w + 1)).clamp(0, 1) for w in (1, 2, 3)
    ]  # widths 1..3: inner edge bands
    outline = torch.stack(outlines)[width.to(dev) - 1, torch.arange(n, device=dev)]
    # Strong edges of the photo itself (seams, pockets, laces): a morphological gradient.
    edges = (_dilate(x, 3) - _erode(x, 3)).clamp(0, 1)
    drawn = silhouette * (1 - (edges > 0.35).to(x.dtype) * 0.8)
    angle = torch.rand(n, generator=gen) * 2 * math.pi
    h, w_ = x.shape[-2:]
    ys = torch.linspace(-1, 1, h, device=dev)[None, :, None]
    xs = torch.linspace(-1, 1, w_, device=dev)[None, None, :]
    ramp = (
        torch.cos(angle).to(dev)[:, None, None] * xs + torch.sin(angle).to(dev)[:, None, None] * ys
    )
    gradient = silhouette * (0.65 + 0.35 * ramp[:, None]).clamp(0.2, 1)
    fill = (0.15 + 0.45 * torch.rand(n, generator=gen)).to(dev, x.dtype)[:, None, None, None]
    stroked = torch.maximum(outline, mask * fill)
    styled = torch.stack(
        [
            silhouette,
            outline * level.to(dev, x.dtype)[:, None, None, None],
            drawn,
            gradient,
            stroked,
        ]
    )
    out = styled[style.to(dev), torch.arange(n, device=dev)]
    peak = out.amax(dim=(1, 2, 3), keepdim=True).clamp_min(1e-3)
    out = out / peak
    return torch.where(pick.to(dev)[:, None, None, None], out, x)


def random_icon(x: torch.Tensor, probability: float, gen: torch.Generator | None) -> torch.Tensor:
    """Fashion-MNIST photos redrawn as icons are drawn, as they look after ``canonicalize``.

    An icon simplifies the item's shape (straight sides, rounded corners, stubby sleeves) and is
    drawn as a stroke: after the page is inverted and the enclosed background filled
    (``preprocessing.fill_enclosed``), a bright 1-2 px contour around a flat grey inside, with
    the inner lines (collar, zip, laces) bright too. With probability ``probability`` a sample
    becomes that: its mask coarsened on a 2-3 px grid and smoothed back (a simpler shape),
    squeezed by up to 23% on one axis, its contour bright, its inside grey
    (0.45-0.65, around the fill's 0.55) and, for half of them, its strong inner edges bright.
    """
    pick = _pick(x.shape[0], probability, gen)
    if pick is None:
        return x
    n = x.shape[0]
    dev, dtype = x.device, x.dtype
    size = x.shape[-1]
    # No closing here (unlike random_style): the gap between a sleeve and the body is what
    # tells a pullover from a bag once the shape is coarsened.
    mask = (x > 0.08).to(dtype)
    simple = []
    for cell in (2, 3):  # coarser grid: a simpler, boxier shape (sleeves survive a 3 px grid)
        coarse = F.avg_pool2d(mask, cell, stride=cell, ceil_mode=True)
        smooth = F.interpolate(coarse, size=(size, size), mode="bilinear", align_corners=False)
        simple.append((smooth > 0.5).to(dtype))
    which = torch.randint(0, 2, (n,), generator=gen).to(dev)
    shape = torch.stack(simple)[which, torch.arange(n, device=dev)]
    # Squeezed on one axis about the centre (icons are drawn squarer or taller than photos);
    # a grid scale above 1 shrinks, so nothing is cut off at the edge.
    stretch = 1 + torch.rand(n, generator=gen) * 0.3
    theta = torch.zeros(n, 2, 3)
    horizontal = torch.rand(n, generator=gen) < 0.5
    theta[:, 0, 0] = torch.where(horizontal, stretch, torch.ones(n))
    theta[:, 1, 1] = torch.where(horizontal, torch.ones(n), stretch)
    grid = F.affine_grid(theta.to(dev, dtype), list(x.shape), align_corners=False)
    shape = (F.grid_sample(shape, grid, align_corners=False) > 0.5).to(dtype)
    edges_src = F.grid_sample(x, grid, align_corners=False)
    width = torch.randint(1, 3, (n,), generator=gen).to(dev)
    contours = torch.stack([(shape - _erode(shape, 2 * w + 1)).clamp(0, 1) for w in (1, 2)])
    contour = contours[width - 1, torch.arange(n, device=dev)]
    fill = (0.45 + 0.2 * torch.rand(n, generator=gen)).to(dev, dtype)[:, None, None, None]
    inner = ((_dilate(edges_src, 3) - _erode(edges_src, 3)) > 0.35).to(dtype) * shape
    with_lines = (torch.rand(n, generator=gen) < 0.5).to(dev, dtype)[:, None, None, None]
    icon = torch.maximum(torch.maximum(contour, shape * fill), inner * with_lines)
    return torch.where(pick.to(dev)[:, None, None, None], icon, x)


def random_blur(x: torch.Tensor, probability: float, gen: torch.Generator | None) -> torch.Tensor:
    """A light 3x3 box blur on some samples (downscaled JPEGs and soft renders)."""
    if probability <= 0:
        return x
    pick = (torch.rand(x.shape[0], generator=gen) < probability).to(x.device)
    blurred = F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False)
    return torch.where(pick[:, None, None, None], blurred, x)


def random_gamma(x: torch.Tensor, amount: float, gen: torch.Generator | None) -> torch.Tensor:
    """Contrast changes as a random gamma in [1/(1+amount), 1+amount] (stroke and fill
    brightness differ between drawings)."""
    if amount <= 0:
        return x
    log_gamma = (torch.rand(x.shape[0], generator=gen) * 2 - 1) * math.log1p(amount)
    gamma = torch.exp(log_gamma).to(x.device, x.dtype)[:, None, None, None]
    return x.clamp_min(0).pow(gamma)


def random_erasing(
    x: torch.Tensor, probability: float, gen: torch.Generator | None, fill: float = 0.0
) -> torch.Tensor:
    """Zhong et al. 2020: blank a random rectangle (2-40% of the area, aspect 0.3-3.3)."""
    if probability <= 0:
        return x
    n, _, h, w = x.shape
    area = (torch.rand(n, generator=gen) * 0.38 + 0.02) * h * w
    log_ratio = (torch.rand(n, generator=gen) * 2 - 1) * math.log(3.3)
    ratio = torch.exp(log_ratio)
    eh = torch.sqrt(area * ratio).clamp(1, h).long()
    ew = torch.sqrt(area / ratio).clamp(1, w).long()
    top = (torch.rand(n, generator=gen) * (h - eh + 1)).long()
    left = (torch.rand(n, generator=gen) * (w - ew + 1)).long()
    apply = torch.rand(n, generator=gen) < probability
    ys = torch.arange(h)[None, :]
    xs = torch.arange(w)[None, :]
    in_rows = (ys >= top[:, None]) & (ys < (top + eh)[:, None])
    in_cols = (xs >= left[:, None]) & (xs < (left + ew)[:, None])
    mask = (in_rows[:, :, None] & in_cols[:, None, :]) & apply[:, None, None]
    return x.masked_fill(mask[:, None].to(x.device), fill)


def _smooth_noise(n: int, size: int, gen: torch.Generator | None) -> torch.Tensor:
    cells = torch.randint(2, 8, (1,), generator=gen).item()
    coarse = torch.rand(n, 1, int(cells), int(cells), generator=gen)
    return F.interpolate(coarse, size=(size, size), mode="bilinear", align_corners=False)


def _ellipses(n: int, size: int, gen: torch.Generator | None) -> torch.Tensor:
    """Filled or outlined ellipses and rings (clocks, plates, balls, faces)."""
    coords = torch.linspace(-1, 1, size)
    ys, xs = coords[None, :, None], coords[None, None, :]
    cy, cx = ((torch.rand(2, n, generator=gen) - 0.5) * 0.3)[:, :, None, None]
    ry, rx = (0.45 + 0.5 * torch.rand(2, n, generator=gen))[:, :, None, None]
    r = ((ys - cy) / ry) ** 2 + ((xs - cx) / rx) ** 2
    filled = (r <= 1).float()
    ring = ((r <= 1) & (r >= 0.55 + 0.3 * torch.rand(n, 1, 1, generator=gen))).float()
    pick = (torch.rand(n, 1, 1, generator=gen) < 0.5).float()
    out = pick * filled * (0.4 + 0.6 * torch.rand(n, 1, 1, generator=gen)) + (1 - pick) * ring
    return out[:, None]


def _scribbles(n: int, size: int, gen: torch.Generator | None) -> torch.Tensor:
    """Random strokes (text, digits, line art of other things), 1-2 px wide."""
    out = torch.zeros(n, 1, size, size)
    steps = torch.linspace(0, 1, 4 * size)
    for _ in range(6):
        a, b = torch.rand(2, n, 2, generator=gen) * (size - 1)
        points = a[:, None] + (b - a)[:, None] * steps[None, :, None]  # [n, T, 2]
        idx = points.round().long().clamp(0, size - 1)
        keep = (torch.rand(n, generator=gen) < 0.7).float()[:, None].expand(n, len(steps))
        rows = torch.arange(n)[:, None].expand(n, len(steps))
        out[rows, 0, idx[..., 0], idx[..., 1]] = torch.maximum(
            out[rows, 0, idx[..., 0], idx[..., 1]], keep
        )
    return _dilate(out, 3) if torch.rand(1, generator=gen).item() < 0.5 else out


def synthetic_outliers(x: torch.Tensor, n: int, gen: torch.Generator | None) -> torch.Tensor:
    """``n`` grey bright-on-dark pictures of no category, made from the batch ``x`` and noise.

    Equally likely: a Fashion-MNIST item cut into a 4x4 jigsaw and shuffled (its textures,
    none of its shape), round shapes, scribbles, and smooth noise or a gradient. Negatives that
    might be a real item (a pair of shoes, a rectangle like a bag) are avoided on purpose.
    """
    size = x.shape[-1]
    kind = torch.randint(0, 4, (n,), generator=gen)
    src = x[torch.randint(0, len(x), (n,), generator=gen)].cpu()
    tiles = size // 4
    grid = src[:, :, : 4 * tiles, : 4 * tiles].reshape(n, 1, 4, tiles, 4, tiles)
    grid = grid.permute(0, 1, 2, 4, 3, 5).reshape(n, 1, 16, tiles, tiles)
    order = torch.argsort(torch.rand(n, 16, generator=gen), dim=1)
    shuffled = grid[torch.arange(n)[:, None], 0, order][:, None]  # [n, 1, 16, t, t]
    jigsaw = torch.zeros_like(src)
    jigsaw[:, :, : 4 * tiles, : 4 * tiles] = (
        shuffled.reshape(n, 1, 4, 4, tiles, tiles).permute(0, 1, 2, 4, 3, 5)
        .reshape(n, 1, 4 * tiles, 4 * tiles)
    )  # fmt: skip
    noise = _smooth_noise(n, size, gen)
    out = torch.stack([jigsaw, _ellipses(n, size, gen), _scribbles(n, size, gen), noise])
    picked = out[kind, torch.arange(n)]
    return picked.clamp(0, 1).to(x.device, x.dtype)


def augment_batch(
    x: torch.Tensor,
    config: AugmentConfig,
    gen: torch.Generator | None = None,
    background: float = 0.0,
) -> torch.Tensor:
    """x: float [N,C,S,S] in [0,1]. Random numbers come from a CPU generator for determinism.

    ``background`` is the page's value: 0 for Fashion-MNIST (dark), 1 for letterboxed
    catalog photos (white); padding, rotation and erasing fill with it.
    """
    if config.hflip:
        x = random_hflip(x, gen)
    # Style before geometry: the redrawn item is then shifted, turned and zoomed like a photo.
    if x.shape[1] == 1 and background == 0.0:
        x = random_style(x, config.style, gen)
        x = random_icon(x, config.icon, gen)
    x = random_crop(x, config.crop_padding, gen, background)
    x = random_rotation(x, config.rotation_degrees, gen, config.scale, background)
    x = random_colour(x, config.grayscale, config.channel_jitter, gen)
    x = random_brightness(x, config.brightness, gen)
    x = random_gamma(x, config.gamma, gen)
    x = random_blur(x, config.blur, gen)
    return random_erasing(x, config.random_erasing, gen, background)
