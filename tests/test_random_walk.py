"""Random walk of CAMs (misc/random_walk.py): hand-worked graphs, IRN's dense formulation, conservation laws."""
import numpy as np
import pytest
import torch

from misc.random_walk import (
    boundary_affinities,
    label_from_random_walk,
    line_pixels,
    propagate,
    random_walk,
    search_offsets,
    transition_degree,
)


def dense_affinity(boundary: np.ndarray, radius: int, beta: float) -> np.ndarray:
    """Brute-force (HW, HW) affinity with self-loops, written independently of the library's shifted maps."""
    h, w = boundary.shape
    n = h * w
    aff = np.eye(n)
    for y0 in range(h):
        for x0 in range(w):
            for y1 in range(h):
                for x1 in range(w):
                    dy, dx = y1 - y0, x1 - x0
                    d2 = dy * dy + dx * dx
                    if d2 == 0 or d2 >= radius * radius:
                        continue
                    # pixels of the bounding box within distance 1 of the line through both ends
                    on_line = [boundary[y, x] for y in range(min(y0, y1), max(y0, y1) + 1)
                               for x in range(min(x0, x1), max(x0, x1) + 1)
                               if ((y - y0) * dx - (x - x0) * dy) ** 2 < d2]
                    aff[y0 * w + x0, y1 * w + x1] = (1 - max(on_line)) ** beta
    return aff


def test_search_offsets_match_irn_count_and_stay_within_radius():
    offsets = search_offsets(5)
    # disc dy²+dx² < 25 holds 69 pixels: the centre plus 34 mirrored pairs
    assert len(offsets) == 34
    assert all(0 < dy * dy + dx * dx < 25 for dy, dx in offsets)
    assert all(dy > 0 or (dy == 0 and dx > 0) for dy, dx in offsets)
    assert len(search_offsets(2)) == 4  # (0,1), (1,-1), (1,0), (1,1)


def test_line_pixels_by_hand():
    assert line_pixels(0, 3) == ((0, 0), (0, 1), (0, 2), (0, 3))
    # (0, 2) lies at distance 2/sqrt(2) > 1 from the diagonal y = x; (0, 1) at 1/sqrt(2) < 1
    assert set(line_pixels(2, 2)) == {(0, 0), (0, 1), (1, 0), (1, 1), (1, 2), (2, 1), (2, 2)}
    # (2x - 4y)² < 20 inside the 3x5 box: rows keep x <= 2, all x, x >= 2
    assert set(line_pixels(2, 4)) == {(0, 0), (0, 1), (0, 2), (1, 0), (1, 1), (1, 2), (1, 3), (1, 4),
                                      (2, 2), (2, 3), (2, 4)}


def test_line_pixels_diagonal_keeps_corner_neighbours():
    # distance of (0, 1) to the line y = x is 1/sqrt(2) < 1: a diagonal wall cannot be slipped through
    assert set(line_pixels(1, 1)) == {(0, 0), (0, 1), (1, 0), (1, 1)}


def test_affinity_weights_only_within_radius():
    boundary = torch.zeros(11, 11)
    cams = torch.zeros(1, 11, 11)
    cams[0, 5, 5] = 1.0
    offsets, weights = boundary_affinities(boundary, radius=3, beta=10)
    out = propagate(cams, offsets, weights, n_iter=1)[0]
    yy, xx = np.mgrid[:11, :11]
    inside = (yy - 5) ** 2 + (xx - 5) ** 2 < 9
    assert (out.numpy()[inside] > 0).all()
    assert (out.numpy()[~inside] == 0).all()


def test_affinities_by_hand():
    # 1x4 strip with a boundary of 0.5 on pixel 2: pairs whose line covers pixel 2 get (1 - 0.5)^2 = 0.25
    boundary = torch.tensor([[0.0, 0.0, 0.5, 0.0]])
    offsets, weights = boundary_affinities(boundary, radius=2, beta=2)
    right = weights[offsets.index((0, 1))][0].tolist()
    # (0→1) 1, (1→2) 0.25, (2→3) 0.25, (3→off image) 0
    assert right == pytest.approx([1.0, 0.25, 0.25, 0.0])
    # nothing below a one-row strip
    assert weights[offsets.index((1, 0))].abs().sum() == 0
    # degree: self 1 + right + left
    assert transition_degree(offsets, weights)[0].tolist() == pytest.approx([2.0, 2.25, 1.5, 1.25])


def test_affinities_match_brute_force():
    torch.manual_seed(0)
    boundary = torch.rand(6, 7)
    offsets, weights = boundary_affinities(boundary, radius=3, beta=3)
    dense = dense_affinity(boundary.double().numpy(), radius=3, beta=3)
    h, w = boundary.shape
    for o, (dy, dx) in enumerate(offsets):
        for y in range(h):
            for x in range(w):
                inside = 0 <= y + dy < h and 0 <= x + dx < w
                expected = dense[y * w + x, (y + dy) * w + x + dx] if inside else 0.0
                assert weights[o, y, x].item() == pytest.approx(expected, abs=1e-6)


def test_propagate_equals_irn_dense_formulation():
    """IRN: T = A / A.sum(0); rw = x @ T^(2^exp_times) (matrix squared exp_times times)."""
    torch.manual_seed(1)
    h, w, radius, beta, exp_times = 6, 5, 3, 4.0, 3
    boundary = torch.rand(h, w) * 0.8
    cams = torch.rand(2, h, w)
    aff = torch.from_numpy(dense_affinity(boundary.double().numpy(), radius, beta))
    trans = aff / aff.sum(dim=0, keepdim=True)
    for _ in range(exp_times):
        trans = trans @ trans
    expected = (cams.double() * (1 - boundary.double())).reshape(2, -1) @ trans
    out = random_walk(cams, boundary, beta=beta, exp_times=exp_times, radius=radius)
    assert torch.allclose(out.double().reshape(2, -1), expected, atol=1e-5)


def test_output_is_convex_combination_constant_map_is_fixed():
    torch.manual_seed(2)
    boundary = torch.rand(9, 8)
    offsets, weights = boundary_affinities(boundary, radius=5, beta=10)
    const = torch.full((1, 9, 8), 0.37)
    assert torch.allclose(propagate(const, offsets, weights, n_iter=16), const, atol=1e-5)
    cams = torch.rand(3, 9, 8)
    out = propagate(cams, offsets, weights, n_iter=7)
    for c in range(3):
        assert out[c].min() >= cams[c].min() - 1e-6 and out[c].max() <= cams[c].max() + 1e-6


def test_degree_weighted_mass_is_conserved_plain_mass_is_not():
    torch.manual_seed(3)
    boundary = torch.rand(10, 12)
    offsets, weights = boundary_affinities(boundary, radius=5, beta=2)
    degree = transition_degree(offsets, weights)
    cams = torch.zeros(2, 10, 12)
    cams[0, 0, 0] = 1.0  # a corner pixel: few neighbours, so plain mass must change
    cams[1] = torch.rand(10, 12)
    out = propagate(cams, offsets, weights, n_iter=20)
    for c in range(2):
        assert (degree * out[c]).sum().item() == pytest.approx((degree * cams[c]).sum().item(), rel=1e-5)
    assert abs(out[0].sum().item() - 1.0) > 1e-2


def test_never_crosses_a_closed_boundary():
    boundary = torch.zeros(20, 20)
    boundary[4, 4:15] = boundary[14, 4:15] = 1.0  # a closed one-pixel square ring rows 4..14, cols 4..14
    boundary[4:15, 4] = boundary[4:15, 14] = 1.0
    cams = torch.zeros(1, 20, 20)
    cams[0, 7:12, 7:12] = 1.0
    out = random_walk(cams, boundary, beta=10, exp_times=8, radius=5)[0]
    ring_and_inside = torch.zeros(20, 20, dtype=torch.bool)
    ring_and_inside[4:15, 4:15] = True
    assert (out[~ring_and_inside] == 0).all()
    interior = out[5:14, 5:14]
    # spread over the whole interior and converged there to one value (a degree-weighted mean of the seeds)
    assert interior.min() > 0.3 and interior.max() - interior.min() < 1e-4
    assert (out[4, 4:15] == 0).all()  # ring pixels are isolated (affinity 0 to all) and their seeds removed


def test_tiled_walk_matches_whole_walk_when_halo_covers_everything():
    torch.manual_seed(4)
    boundary = torch.rand(12, 10)
    cams = torch.rand(2, 12, 10)
    whole = random_walk(cams, boundary, beta=5, exp_times=2, radius=3)
    tiled = random_walk(cams, boundary, beta=5, exp_times=2, radius=3, tile_size=5, tile_halo=12)
    assert torch.allclose(whole, tiled, atol=1e-6)
    # with a small halo the tiles see a closed window edge: different numbers, same shape and finite
    rough = random_walk(cams, boundary, beta=5, exp_times=2, radius=3, tile_size=5, tile_halo=1)
    assert rough.shape == whole.shape and torch.isfinite(rough).all() and not torch.allclose(rough, whole)


def test_label_from_random_walk_by_hand():
    walked = torch.tensor([[[0.1, 2.0], [0.6, 0.0]]])  # one class (key 1), max 2 → normalised 0.05, 1, 0.3, 0
    label = label_from_random_walk(walked, np.array([1]), (8, 7), bg_threshold=0.25)
    assert label.shape == (8, 7) and label.dtype == np.uint8
    assert set(np.unique(label)) <= {0, 2}
    assert label[7, 0] == 2 and label[0, 6] == 2 and label[0, 0] == 0 and label[7, 6] == 0
    assert label_from_random_walk(walked[:0], np.array([], np.int64), (5, 5), bg_threshold=0.25).max() == 0


def test_label_from_random_walk_without_normalisation_keeps_the_cam_scale():
    walked = torch.tensor([[[0.1, 0.2], [0.3, 0.05]]])  # max 0.3: normalised 0.33, 0.67, 1, 0.17
    label = label_from_random_walk(walked, np.array([0]), (2, 2), bg_threshold=0.25, normalize=False, stride=1)
    assert label.tolist() == [[0, 0], [1, 0]]
    normalised = label_from_random_walk(walked, np.array([0]), (2, 2), bg_threshold=0.25, stride=1)
    assert normalised.tolist() == [[1, 1], [1, 0]]


@pytest.mark.parametrize("normalization, expected", [("max", 1.0), ("none", None), ("local", 0.4)])
def test_pseudo_mask_normalisations_on_a_flat_cam(normalization, expected):
    """A flat CAM of 0.4 under a patchy boundary map: the walk only averages, so ``local`` (walk of the CAM over the
    walk of ones) gives back exactly 0.4 everywhere, ``max`` stretches it to 1 somewhere, and ``none`` is dimmed near
    the boundaries by IRN's (1 - boundary) seed mask, never above 0.4."""
    from step.make_sem_seg_labels import pseudo_mask

    g = torch.Generator().manual_seed(0)
    boundary = torch.rand(12, 10, generator=g) * 0.6
    cams = torch.full((1, 12, 10), 0.4)
    label, walked = pseudo_mask(cams, np.array([0]), boundary, (48, 40), bg_threshold=0.3, beta=10, exp_times=3,
                                cam_power=1.0, radius=3, normalization=normalization)
    if normalization == "local":
        assert torch.allclose(walked, torch.full_like(walked, 0.4), atol=1e-5)
        assert (label == 1).all()  # 0.4 > 0.3 everywhere
    elif normalization == "max":
        assert float(walked.max()) < 0.4 and (label == 1).any()  # stretched: the maximum pixel becomes 1
    else:
        assert float(walked.max()) < 0.4 - 1e-3 and float(walked.min()) > 0
    with pytest.raises(ValueError, match="normalization"):
        pseudo_mask(cams, np.array([0]), boundary, (48, 40), bg_threshold=0.3, beta=10, exp_times=3,
                    normalization="mean")


def test_walk_threads_setting_is_scoped_and_does_not_change_the_result():
    gen = torch.Generator().manual_seed(3)
    boundary = torch.rand(24, 20, generator=gen) * 0.3
    cams = torch.rand(2, 24, 20, generator=gen)
    saved = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        one = random_walk(cams, boundary, exp_times=4, threads=1)
        assert torch.get_num_threads() == 2  # restored after the walk
        default = random_walk(cams, boundary, exp_times=4, threads=None)
    finally:
        torch.set_num_threads(saved)
    assert torch.allclose(one, default, rtol=1e-5, atol=1e-6)
    assert (one - cams * (1 - boundary)).abs().max() > 1e-3  # the walk did move mass
