"""NT-Xent and the CrossPoint loss: paper formula, symmetry, closed forms, gradients, dtypes."""

import math

import pytest
import torch

from models.losses import crosspoint_loss, nt_xent


def nt_xent_double_loop(a: torch.Tensor, b: torch.Tensor, temperature: float) -> torch.Tensor:
    """Literal transcription: mean over the 2N anchors of -log(exp(s+/t) / sum_{v != u} exp(s(u, v)/t))."""
    z = torch.cat((a, b)).double()
    n = a.shape[0]
    total = 0.0
    for u in range(2 * n):
        positive = u + n if u < n else u - n
        sim = [torch.dot(z[u], z[v]) / (z[u].norm() * z[v].norm()) / temperature for v in range(2 * n)]
        denominator = sum(torch.exp(sim[v]) for v in range(2 * n) if v != u)
        total = total - torch.log(torch.exp(sim[positive]) / denominator)
    return total / (2 * n)


@pytest.mark.parametrize("n,d,temperature", [(1, 4, 0.1), (5, 8, 0.1), (7, 3, 0.5)])
def test_nt_xent_matches_paper_formula(n, d, temperature):
    g = torch.Generator().manual_seed(n * 100 + d)
    a = torch.randn(n, d, generator=g, dtype=torch.float64)
    b = torch.randn(n, d, generator=g, dtype=torch.float64)
    expected = nt_xent_double_loop(a, b, temperature)
    assert nt_xent(a, b, temperature).item() == pytest.approx(expected.item(), abs=1e-6, rel=1e-6)


def test_nt_xent_is_symmetric_and_scale_invariant():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(6, 16, generator=g), torch.randn(6, 16, generator=g)
    torch.testing.assert_close(nt_xent(a, b), nt_xent(b, a))
    torch.testing.assert_close(nt_xent(3.0 * a, 0.5 * b), nt_xent(a, b))


@pytest.mark.parametrize("n,temperature", [(2, 0.1), (4, 0.1), (8, 0.5)])
def test_nt_xent_closed_form_aligned_orthogonal(n, temperature):
    # a == b with mutually orthogonal rows: the positive has similarity 1, the other 2N - 2 terms 0.
    a = torch.eye(n, 2 * n, dtype=torch.float64)
    expected = math.log(1.0 + (2 * n - 2) * math.exp(-1.0 / temperature))
    assert nt_xent(a, a.clone(), temperature).item() == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("n", [1, 3, 16])
def test_nt_xent_closed_form_equal_similarities(n):
    # All 2N embeddings identical: every logit equals 1/t, so each anchor's loss is -log(1/(2N-1)).
    a = torch.ones(n, 5, dtype=torch.float64)
    assert nt_xent(a, a.clone(), 0.1).item() == pytest.approx(-math.log(1.0 / (2 * n - 1)), abs=1e-9)


def test_nt_xent_gradients_are_finite_and_dtypes_follow_input():
    g = torch.Generator().manual_seed(1)
    for dtype in (torch.float32, torch.float64):
        a = torch.randn(4, 8, generator=g, dtype=dtype, requires_grad=True)
        b = torch.randn(4, 8, generator=g, dtype=dtype, requires_grad=True)
        loss = nt_xent(a, b)
        assert loss.dtype == dtype
        loss.backward()
        assert torch.isfinite(a.grad).all() and torch.isfinite(b.grad).all()
        assert a.grad.abs().sum() > 0


def test_nt_xent_low_precision_inputs_computed_in_float32():
    g = torch.Generator().manual_seed(2)
    a = torch.randn(8, 32, generator=g) * 50  # large norms overflow fp16 dot products if not upcast
    b = torch.randn(8, 32, generator=g) * 50
    reference = nt_xent(a.double(), b.double())
    for dtype in (torch.float16, torch.bfloat16):
        loss = nt_xent(a.to(dtype), b.to(dtype))
        assert loss.dtype == torch.float32 and torch.isfinite(loss)
        assert loss.item() == pytest.approx(reference.item(), rel=2e-2)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = nt_xent(a, b)
    assert loss.dtype == torch.float32
    assert loss.item() == pytest.approx(reference.item(), rel=1e-5)


def test_crosspoint_loss_is_imid_plus_cmid():
    g = torch.Generator().manual_seed(3)
    z1, z2, h = (torch.randn(5, 7, generator=g, dtype=torch.float64) for _ in range(3))
    total, parts = crosspoint_loss(z1, z2, h, temperature=0.1)
    assert set(parts) == {"imid", "cmid"}
    torch.testing.assert_close(parts["imid"], nt_xent(z1, z2, 0.1))
    torch.testing.assert_close(parts["cmid"], nt_xent(torch.stack([z1, z2]).mean(dim=0), h, 0.1))
    torch.testing.assert_close(total, parts["imid"] + parts["cmid"])
    assert total.dtype == torch.float64


def test_nt_xent_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="equal shape"):
        nt_xent(torch.randn(4, 8), torch.randn(5, 8))

