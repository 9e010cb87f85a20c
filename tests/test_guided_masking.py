import itertools

import numpy as np
import pytest
import torch

from angiokit.networks import guided_masking, patch_probabilities, reference_guided_masking

ROWS = 200_000


def successive_inclusion(p, k):
    """Exact inclusion probabilities of k successive draws without replacement."""
    n = len(p)
    out = np.zeros(n)
    for order in itertools.permutations(range(n), k):
        prob, left = 1.0, 1.0
        for i in order:
            prob *= p[i] / left
            left -= p[i]
        for i in order:
            out[i] += prob
    return out


def _frequencies(sampler, probs, num_mask, alpha, rows=ROWS):
    torch.manual_seed(0)
    keep, mask = sampler(probs.expand(rows, -1).contiguous(), num_mask, alpha)
    return mask.double().mean(0).numpy()


def _assert_close(freq, exact, rows=ROWS):
    se = np.sqrt(exact * (1 - exact) / rows)
    assert np.all(np.abs(freq - exact) <= 5 * se + 1e-9), (freq, exact)


P = torch.tensor([0.4, 0.25, 0.15, 0.1, 0.06, 0.04])


def test_guided_draws_match_sequential_sampling_without_replacement():
    exact = successive_inclusion(P.numpy(), 2)
    _assert_close(_frequencies(guided_masking, P, 2, 1.0), exact)


def test_mixed_guided_and_uniform_inclusion():
    p = torch.tensor([0.3, 0.3, 0.2, 0.1, 0.05, 0.05, 0.0, 0.0])
    guided = successive_inclusion(p.numpy(), 2)  # k = int(0.5 * 4) = 2 guided picks
    exact = guided + (1 - guided) * 2 / 6  # then 2 of the 6 others uniformly
    _assert_close(_frequencies(guided_masking, p, 4, 0.5), exact)


def test_reference_loop_has_the_same_distribution():
    exact = successive_inclusion(P.numpy(), 2)
    _assert_close(_frequencies(reference_guided_masking, P, 2, 1.0, rows=20_000), exact, rows=20_000)


def test_every_image_gets_exactly_num_mask_and_no_signal_means_uniform():
    probs = torch.zeros(4000, 10)
    probs[:2000, 3] = 1.0  # one vessel patch only (fewer than k): it is always masked
    keep, mask = guided_masking(probs, 5, 0.8)
    assert (mask.sum(1) == 5).all() and keep.shape == (4000, 5)
    assert torch.equal(torch.sort(torch.cat([keep, mask.nonzero()[:, 1].view(4000, 5)], 1), 1).values, torch.arange(10).expand(4000, -1))
    assert mask[:2000, 3].all()
    freq = mask[:2000].double().mean(0)
    assert torch.allclose(freq[[0, 1, 2, 4, 5]], torch.full((5,), 4 / 9, dtype=torch.double), atol=0.05)
    uniform = mask[2000:].double().mean(0)  # no signal at all
    assert torch.allclose(uniform, torch.full((10,), 0.5, dtype=torch.double), atol=0.05)


def test_alpha_zero_is_plain_mae_and_arguments_are_checked():
    keep, mask = guided_masking(P.expand(50_000, -1).contiguous(), 3, 0.0)
    assert torch.allclose(mask.double().mean(0), torch.full((6,), 0.5, dtype=torch.double), atol=0.01)
    with pytest.raises(ValueError):
        guided_masking(P[None], 6, 0.5)
    with pytest.raises(ValueError):
        guided_masking(P[None], 2, 1.5)


def test_patch_probabilities_are_each_patch_share():
    g = torch.zeros(2, 1, 32, 32)
    g[0, 0, :16, :16] = 1.0
    g[0, 0, 16:, 16:] = 3.0
    p = patch_probabilities(g, 16)
    assert torch.allclose(p[0], torch.tensor([0.25, 0.0, 0.0, 0.75]))
    assert torch.equal(p[1], torch.zeros(4))
