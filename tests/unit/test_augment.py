import torch

from product_classifier.config import AugmentConfig
from product_classifier.training.augment import (
    augment_batch,
    random_crop,
    random_erasing,
    random_hflip,
)


def _batch(n=64):
    return torch.rand(n, 1, 28, 28)


def test_augmentation_keeps_shape_and_range():
    cfg = AugmentConfig(
        hflip=True, crop_padding=3, rotation_degrees=10, brightness=0.2, random_erasing=0.5
    )
    out = augment_batch(_batch(), cfg, torch.Generator().manual_seed(0))
    assert out.shape == (64, 1, 28, 28)
    assert out.min() >= 0 and out.max() <= 1


def test_augmentation_is_deterministic_for_a_seed():
    cfg = AugmentConfig(crop_padding=2, random_erasing=0.5)
    x = _batch()
    a = augment_batch(x, cfg, torch.Generator().manual_seed(1))
    b = augment_batch(x, cfg, torch.Generator().manual_seed(1))
    assert torch.equal(a, b)


def test_crop_shifts_content_without_rescaling():
    x = torch.zeros(8, 1, 28, 28)
    x[:, :, 10:18, 10:18] = 1.0
    out = random_crop(x, 2, torch.Generator().manual_seed(0))
    assert torch.equal(out.sum(dim=(1, 2, 3)), x.sum(dim=(1, 2, 3)))  # the square stays whole
    assert not torch.equal(out, x)


def test_hflip_flips_about_half():
    x = torch.arange(28.0).expand(200, 1, 28, 28).contiguous()
    out = random_hflip(x, torch.Generator().manual_seed(0))
    flipped = (out[:, 0, 0, 0] == 27).float().mean().item()
    assert 0.35 < flipped < 0.65


def test_erasing_blanks_pixels_only_when_applied():
    x = torch.ones(100, 1, 28, 28)
    assert torch.equal(random_erasing(x, 0.0, None), x)
    out = random_erasing(x, 1.0, torch.Generator().manual_seed(0))
    erased = (out == 0).flatten(1).float().mean(1)
    assert (erased > 0.015).all() and (erased < 0.45).all()


def test_style_redraws_items_as_silhouettes_and_outlines() -> None:
    from product_classifier.training.augment import random_style

    x = torch.zeros(64, 1, 28, 28)
    x[:, :, 6:22, 8:20] = torch.linspace(0.3, 0.9, 12)  # a shaded item on dark
    out = random_style(x, 1.0, torch.Generator().manual_seed(0))
    again = random_style(x, 1.0, torch.Generator().manual_seed(0))
    assert torch.equal(out, again)  # seeded
    assert out.shape == x.shape and out.min() >= 0 and out.max() <= 1
    assert torch.allclose(out.amax(dim=(1, 2, 3)), torch.ones(64))  # peak stretched to 1
    lit = (out > 0.05).flatten(1).sum(1)
    # Outlines light far fewer pixels than the 16x12 item; silhouettes light about all of it.
    assert lit.min() < 100 and lit.max() >= 16 * 12
    assert torch.equal(random_style(x, 0.0, None), x)


def test_icon_redraws_items_as_a_bright_contour_around_a_grey_inside() -> None:
    from product_classifier.training.augment import random_icon

    x = torch.zeros(32, 1, 28, 28)
    x[:, :, 4:24, 8:20] = torch.linspace(0.3, 0.9, 12)  # a shaded 20x12 item on dark
    out = random_icon(x, 1.0, torch.Generator().manual_seed(0))
    assert torch.equal(out, random_icon(x, 1.0, torch.Generator().manual_seed(0)))  # seeded
    assert out.shape == x.shape and out.min() >= 0 and out.max() <= 1
    for icon in out[:, 0]:
        lit = icon > 0.05
        # Every icon keeps most of the item's area (a squeeze of at most 23%, never a crop)...
        assert 0.6 * 20 * 12 <= lit.sum() <= 20 * 12 * 1.1
        # ...has a bright contour and a grey inside, as canonicalize's fill leaves an icon.
        assert icon.max() == 1.0
        inside = icon[lit & (icon < 0.99)]
        assert inside.numel() > 0 and inside.min() >= 0.44 and inside.max() <= 0.66
    # Nothing outside the item lights up.
    assert float(out[:, :, :2].sum()) == 0.0
    assert torch.equal(random_icon(x, 0.0, None), x)


def test_colour_crops_shift_every_channel_and_pad_with_the_page() -> None:
    from product_classifier.training.augment import random_crop

    x = torch.rand(8, 3, 16, 16)
    out = random_crop(x, 3, torch.Generator().manual_seed(1), fill=1.0)
    assert out.shape == x.shape
    # The same shift for R, G and B: channel differences survive wherever no padding shows.
    diff_in, diff_out = x[:, 0] - x[:, 1], out[:, 0] - out[:, 1]
    assert torch.isclose(diff_out, diff_in.roll(0)).float().mean() < 1.0  # moved...
    padded = (out == 1.0).all(dim=1)
    assert padded.any()  # ...and padded with white, not black


def test_synthetic_outliers_are_pictures_of_no_category() -> None:
    from product_classifier.training.augment import synthetic_outliers

    x = torch.zeros(16, 1, 28, 28)
    x[:, :, 4:24, 6:22] = 0.8  # an item
    gen = torch.Generator().manual_seed(0)
    out = synthetic_outliers(x, 64, gen)
    assert out.shape == (64, 1, 28, 28) and out.min() >= 0 and out.max() <= 1
    again = synthetic_outliers(x, 64, torch.Generator().manual_seed(0))
    assert torch.equal(out, again)  # seeded
    # Not copies of the batch: a jigsaw keeps the item's pixels but not its shape.
    assert not any(torch.equal(o, x[0]) for o in out)
    assert len({round(float(o.mean()), 3) for o in out}) > 16  # varied kinds and sizes
