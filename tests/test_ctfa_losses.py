"""misc/ctfa.py on tiny tensors with answers worked out by hand: relation matrices, the CTLM losses, pseudo labels,
the dual-branch combination."""
import math

import pytest
import torch

from misc.ctfa import (cams_to_pseudo_labels, class_token_consistency_loss, dual_branch_losses,
                       foreground_activated_log_probs, patch_relation_loss, random_local_crops, relation_matrix)


def grid(*vectors):
    """Tokens (as 2-vectors) on a 1×N grid → a (1, 2, 1, N) feature map."""
    return torch.tensor(vectors, dtype=torch.float32).t().reshape(1, 2, 1, len(vectors))


def test_relation_matrix_is_the_cosine_of_each_pair():
    # tokens (1, 0), (1, 1), (0, 2): cos 1/√2 between the first two, 0 between the first and last, 1/√2 the others
    rel = relation_matrix(grid((1, 0), (1, 1), (0, 2)))
    s = 1 / math.sqrt(2)
    assert torch.allclose(rel[0], torch.tensor([[1, s, 0], [s, 1, s], [0, s, 1]]), atol=1e-6)


def test_patch_relation_loss_by_hand():
    # final tokens (2, 1), (1, 2) (over-smoothed: cosine 4/5); intermediate tokens (1, 0), (0, 1): relation
    # [[1, 0], [0, 1]]. |1 - 1| + |0.8 - 0| + |0.8 - 0| + |1 - 1| over 4 pairs = 0.4
    final = grid((2, 1), (1, 2)).requires_grad_(True)
    inter = grid((1, 0), (0, 1)).requires_grad_(True)
    loss = patch_relation_loss(final, inter)
    assert loss.item() == pytest.approx(0.4)
    loss.backward()
    assert inter.grad is None  # the intermediate relation is a target only
    assert final.grad is not None and final.grad.abs().sum() > 0


def test_patch_relation_loss_clips_negative_cosines_and_is_zero_on_equal_relations():
    # final (1, 0), (-1, 0): cosine -1, clipped to 0; intermediate (1, 0), (0, 1): cosine 0 → same relation, loss 0
    assert patch_relation_loss(grid((1, 0), (-1, 0)), grid((1, 0), (0, 1))).item() == pytest.approx(0.0, abs=1e-7)
    # the same tokens on both sides: loss 0 whatever they are
    tokens = torch.randn(2, 5, 3, 4)
    assert patch_relation_loss(tokens, tokens).item() == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(ValueError, match="grids differ"):
        patch_relation_loss(torch.randn(1, 4, 2, 2), torch.randn(1, 4, 2, 3))


def test_class_token_consistency_by_hand():
    # global (1, 0); local crops (1, 0) → 1 - 1 = 0, (0, 3) → 1 - 0 = 1, (-1, 0) → 1 - (-1) = 2: mean 1
    global_token = torch.tensor([[1.0, 0.0]], requires_grad=True)
    local = torch.tensor([[[1.0, 0.0], [0.0, 3.0], [-1.0, 0.0]]], requires_grad=True)
    loss = class_token_consistency_loss(global_token, local)
    assert loss.item() == pytest.approx(1.0)
    loss.backward()
    assert global_token.grad is None and local.grad.abs().sum() > 0


def test_pseudo_labels_with_two_background_thresholds():
    # one image, 2 classes present; after max normalisation class 1's map is [1.0, 0.5, 0.2, 0.0] and class 2's
    # [0.0, 0.1, 0.1, 0.3] (its peak 3 at the last pixel is divided by 3 → 1.0 ... see below)
    cams = torch.tensor([[[[4.0, 2.0, 0.8, 0.0]], [[0.0, 0.3, 0.3, 3.0]]]])  # (1, 2, 1, 4)
    # normalised: class 1 [1, .5, .2, 0], class 2 [0, .1, .1, 1]; best [1 (c1), .5 (c1), .2 (c1), 1 (c2)]
    labels = torch.tensor([[1.0, 1.0]])
    out = cams_to_pseudo_labels(cams, labels, high=0.7, low=0.25)
    assert out.tolist() == [[[1, 255, 0, 2]]]
    # class 2 absent from the image-level label: its map is dropped, the last pixel becomes background
    out = cams_to_pseudo_labels(cams, torch.tensor([[1.0, 0.0]]), high=0.7, low=0.25)
    assert out.tolist() == [[[1, 255, 0, 0]]] and out.dtype == torch.int64
    # background-free: the best present class wherever it reaches `low`, ignore elsewhere
    out = cams_to_pseudo_labels(cams, labels, high=0.7, low=0.25, background_free=True)
    assert out.tolist() == [[[1, 1, 255, 2]]]
    with pytest.raises(ValueError, match="low"):
        cams_to_pseudo_labels(cams, labels, high=0.2, low=0.5)


def test_pseudo_labels_with_par_follow_the_image_colours():
    # a CAM that spills from the left (red) half over two columns of the right (blue) half; PAR pulls the scores
    # back towards the colour edge, so fewer blue pixels stay above the high threshold
    image = torch.zeros(1, 3, 8, 8)
    image[0, 0, :, :4] = 1.0
    image[0, 2, :, 4:] = 1.0
    cam = torch.zeros(1, 1, 8, 8)
    cam[..., :6] = 1.0
    labels = torch.ones(1, 1)
    plain = cams_to_pseudo_labels(cam, labels, high=0.7, low=0.3)
    refined = cams_to_pseudo_labels(cam, labels, high=0.7, low=0.3, images=image, par_num_iter=10,
                                    par_dilations=(1, 2))
    assert (plain[0, :, 4:6] == 1).all()
    assert (refined[0, :, 4:6] == 1).sum() < (plain[0, :, 4:6] == 1).sum()
    assert (refined[0, :, :3] == 1).all()  # the red half keeps its class


def test_foreground_activation_by_hand():
    # semantic logits 0, 0 (p_sem = 1/2 each), p_fg = sigmoid(log 3) = 3/4: joint ∝ (1/2·1/4, 1/2·3/4) → (1/4, 3/4)
    sem = torch.zeros(1, 2, 1, 1)
    fg = torch.full((1, 1, 1, 1), math.log(3.0))
    probs = foreground_activated_log_probs(sem, fg).exp()
    assert torch.allclose(probs.flatten(), torch.tensor([0.25, 0.75]), atol=1e-6)
    # 3 classes: p_sem (bg, c1, c2) = (1/2, 1/4, 1/4), p_fg = 1/2 → (1/4, 1/8, 1/8) / (1/2) = (1/2, 1/4, 1/4)
    sem3 = torch.log(torch.tensor([0.5, 0.25, 0.25])).reshape(1, 3, 1, 1)
    probs3 = foreground_activated_log_probs(sem3, torch.zeros(1, 1, 1, 1)).exp()
    assert torch.allclose(probs3.flatten(), torch.tensor([0.5, 0.25, 0.25]), atol=1e-6)


def test_dual_branch_losses_by_hand_and_ignore():
    sem = torch.zeros(1, 2, 1, 2, requires_grad=True)
    fg = torch.full((1, 1, 1, 2), math.log(3.0), requires_grad=True)
    target = torch.tensor([[[1, 255]]])
    seg, fg_loss = dual_branch_losses(sem, fg, target)
    assert seg.item() == pytest.approx(-math.log(0.75), abs=1e-6)  # only the labelled pixel counts
    assert fg_loss.item() == pytest.approx(-math.log(0.75), abs=1e-6)  # BCE of p_fg = 3/4 for a foreground pixel
    (seg + fg_loss).backward()
    assert sem.grad[..., 1].abs().sum() == 0 and sem.grad[..., 0].abs().sum() > 0
    seg0, fg0 = dual_branch_losses(sem, fg, torch.full((1, 1, 2), 255))
    assert seg0.item() == 0 and fg0.item() == 0


def test_random_local_crops_are_seeded_and_inside():
    images = torch.arange(2 * 3 * 10 * 12, dtype=torch.float32).reshape(2, 3, 10, 12)
    a = random_local_crops(images, 3, 4, torch.Generator().manual_seed(5))
    b = random_local_crops(images, 3, 4, torch.Generator().manual_seed(5))
    assert len(a) == 3 and all(c.shape == (2, 3, 4, 4) for c in a)
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert random_local_crops(images, 1, 64, torch.Generator())[0].shape == (2, 3, 10, 10)
