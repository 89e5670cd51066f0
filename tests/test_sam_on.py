"""SAM-ON (Mueller et al., NeurIPS 2023): only the normalization layers are perturbed, and the
gradient norm of eps_hat covers only the perturbed groups (groups with rho = 0 are out of it).
Oracle: the norm and the step computed by hand on a model with one BatchNorm layer."""

import pytest
import torch
from torch import nn
from torch.func import functional_call, grad

from sam_course.optim import GSAM, SAM, norm_layer_groups
from sam_course.optim.perturbation import NORM_LAYERS


def bn_model(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Tanh(), nn.Linear(4, 2)).double()


def batch():
    gen = torch.Generator().manual_seed(7)
    return torch.randn(16, 3, generator=gen, dtype=torch.float64), torch.randint(0, 2, (16,), generator=gen)


def test_norm_layer_groups_split_the_batchnorm_affine_parameters_from_the_rest():
    model = bn_model()
    groups = norm_layer_groups(model, rho=0.5)
    assert [g["rho"] for g in groups] == [0.5, 0.0]
    assert [id(q) for q in groups[0]["params"]] == [id(model[1].weight), id(model[1].bias)]
    assert [id(q) for q in groups[1]["params"]] == [id(q) for q in (model[0].weight, model[0].bias,
                                                                     model[3].weight, model[3].bias)]


def test_the_norm_covers_only_the_perturbed_groups_computed_by_hand():
    model = bn_model()
    x, y = batch()
    opt = SAM(norm_layer_groups(model, rho=0.5), torch.optim.SGD, lr=0.1)
    nn.functional.cross_entropy(model(x), y).backward()
    before = {n: q.detach().clone() for n, q in model.named_parameters()}
    g = {n: q.grad.clone() for n, q in model.named_parameters()}
    opt.first_step()
    # By hand: ||g_N|| over the BatchNorm weight (4 entries) and bias (4 entries) only.
    g_n = torch.cat([g["1.weight"], g["1.bias"]])
    norm = torch.sqrt((g_n ** 2).sum())
    for name in ("1.weight", "1.bias"):
        expected = before[name] + 0.5 * g[name] / norm
        torch.testing.assert_close(model.get_parameter(name).detach(), expected, rtol=0, atol=1e-15)
    for name in ("0.weight", "0.bias", "3.weight", "3.bias"):
        assert torch.equal(model.get_parameter(name).detach(), before[name])
    # The norm over every parameter (the behaviour before issue 15) is a different, larger one.
    everything = torch.sqrt(sum((v ** 2).sum() for v in g.values()))
    assert everything > 1.5 * norm
    eps = torch.cat([model[1].weight.detach() - before["1.weight"], model[1].bias.detach() - before["1.bias"]])
    assert torch.linalg.vector_norm(eps).item() == pytest.approx(0.5, rel=1e-12)
    opt.second_step()
    for name in before:
        assert not torch.equal(model.get_parameter(name).detach(), before[name])  # every parameter steps


def test_one_sam_on_step_equals_the_step_by_hand():
    model = bn_model(1)
    x, y = batch()
    w0 = {n: q.detach().clone() for n, q in model.named_parameters()}
    buffers = {n: b.clone() for n, b in model.named_buffers()}

    def loss(w):
        return nn.functional.cross_entropy(functional_call(model, {**w, **{k: v.clone() for k, v in buffers.items()}},
                                                           (x,)), y)

    g = grad(loss)(w0)
    norm = torch.sqrt((g["1.weight"] ** 2).sum() + (g["1.bias"] ** 2).sum())
    perturbed = {n: w0[n] + (0.3 * g[n] / norm if n.startswith("1.") else 0) for n in w0}
    g_p = grad(loss)(perturbed)
    expected = {n: w0[n] - 0.1 * g_p[n] for n in w0}
    opt = SAM(norm_layer_groups(model, rho=0.3), torch.optim.SGD, lr=0.1)

    def closure():
        out = nn.functional.cross_entropy(model(x), y)
        out.backward()
        return out

    opt.step(closure)
    for n, q in model.named_parameters():
        torch.testing.assert_close(q.detach(), expected[n], rtol=0, atol=1e-14)


def test_gsam_on_normalization_layers_keeps_the_base_group_out_of_the_perturbation():
    model = bn_model(2)
    x, y = batch()
    opt = GSAM(norm_layer_groups(model, rho=0.3), torch.optim.SGD, alpha=0.2, lr=0.1)
    nn.functional.cross_entropy(model(x), y).backward()
    before = model[0].weight.detach().clone()
    opt.first_step(zero_grad=True)
    assert torch.equal(model[0].weight.detach(), before)
    nn.functional.cross_entropy(model(x), y).backward()
    opt.second_step()
    assert not opt.perturbed


def test_every_group_at_rho_zero_is_still_a_two_step_api():
    # Nothing is copied or moved, yet first_step/second_step behave as for any rho: the base step.
    model = bn_model(3)
    x, y = batch()
    opt = SAM(norm_layer_groups(model, rho=0.0), torch.optim.SGD, lr=0.1)
    plain = bn_model(3)
    base = torch.optim.SGD(plain.parameters(), lr=0.1)
    nn.functional.cross_entropy(model(x), y).backward()
    opt.first_step()
    assert opt.perturbed
    opt.second_step()
    nn.functional.cross_entropy(plain(x), y).backward()
    base.step()
    for p, q in zip(model.parameters(), plain.parameters()):
        assert torch.equal(p, q)


def test_norm_layer_groups_find_layer_and_group_norms_and_skip_frozen_parameters():
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.GroupNorm(2, 4), nn.Flatten(), nn.LayerNorm(4), nn.Linear(4, 2))
    model[3].bias.requires_grad_(False)
    groups = norm_layer_groups(model, rho=0.1)
    assert [id(q) for q in groups[0]["params"]] == [id(model[1].weight), id(model[1].bias), id(model[3].weight)]
    assert all(q.requires_grad for g in groups for q in g["params"])
    assert all(any(issubclass(k, n) for n in NORM_LAYERS) for k in (nn.BatchNorm2d, nn.InstanceNorm1d, nn.SyncBatchNorm))


def test_a_model_of_normalization_layers_only_has_one_group():
    groups = norm_layer_groups(nn.BatchNorm1d(3), rho=0.2)
    assert len(groups) == 1 and groups[0]["rho"] == 0.2


@pytest.mark.parametrize("model", [nn.Linear(2, 2), nn.BatchNorm1d(2, affine=False)])
def test_a_model_without_normalization_parameters_is_refused_naming_it(model):
    with pytest.raises(ValueError, match="model has no trainable affine parameter"):
        norm_layer_groups(model)


def test_bad_arguments_are_refused_naming_them():
    with pytest.raises(ValueError, match="rho"):
        norm_layer_groups(bn_model(), rho=-1.0)
    with pytest.raises(TypeError, match="model"):
        norm_layer_groups("a")
