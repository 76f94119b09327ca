import pytest
import torch

from product_classifier.models import count_parameters, create_model, list_models


@pytest.mark.parametrize("name", list_models())
def test_every_registered_model_maps_a_batch_to_ten_logits(name):
    model = create_model(name).eval()
    with torch.no_grad():
        out = model(torch.rand(3, 1, 28, 28))
    assert out.shape == (3, 10)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("name", list_models())
def test_batch_norm_can_be_switched_off(name):
    model = create_model(name, batch_norm=False)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
    assert create_model(name, batch_norm=True) is not None


def test_dropout_is_configurable():
    model = create_model("baseline_cnn", dropout=0.7)
    rates = {m.p for m in model.modules() if isinstance(m, torch.nn.Dropout)}
    assert rates == {0.7}


def test_unknown_model_lists_the_registered_ones():
    with pytest.raises(KeyError, match="baseline_cnn"):
        create_model("vgg16")


def test_unknown_parameter_is_an_error():
    with pytest.raises(TypeError):
        create_model("resnet", depth=20, colour=True)


def test_resnet_depth_must_be_6n_plus_2():
    with pytest.raises(ValueError, match="6n\\+2"):
        create_model("resnet", depth=21)


def test_resnet_width_scales_parameters_quadratically():
    small = count_parameters(create_model("resnet", width=16))
    wide = count_parameters(create_model("resnet", width=32))
    assert 3.5 < wide / small < 4.5
    assert wide <= 1_500_000  # the release budget


def test_models_accept_a_single_image():
    model = create_model("efficientnet").eval()
    with torch.no_grad():
        assert model(torch.rand(1, 1, 28, 28)).shape == (1, 10)
