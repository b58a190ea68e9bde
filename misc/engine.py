"""Faster equivalents of a frozen network: the same function, computed with less work or less memory.

Two uses, each with an exact counterpart elsewhere that the tests compare against:

* :func:`input_gradient_network` — for AdvCAM, which differentiates a frozen eval-mode network with respect to its
  *input* only. A copy with every BatchNorm folded into the convolution before it (eval-mode BN is a per-channel
  affine map), convolutions whose backward computes only the input gradient and keeps nothing of the forward pass
  (the input gradient of a convolution needs the weights, not the input), and ReLU/ReLU6 that keep a 1-byte mask of
  where the gradient passes instead of a float copy of their output. Autograd still runs everything else (padding,
  residual additions, pooling, upsampling), so any backbone built from those modules works.
* :func:`fold_batchnorm` alone — for inference (predict): one convolution instead of a convolution and a BN.

BN folding changes results only by float32 rounding: W' = W·γ/σ, b' = β − μ·γ/σ with σ = sqrt(var + eps).
"""
from __future__ import annotations

import copy
import types

import torch
import torch.nn.functional as F
from torch import nn

_ACTIVATIONS = (nn.ReLU, nn.ReLU6)


def run_with_hooks(model: nn.Module, example: torch.Tensor, handles: list) -> None:
    """One no-grad forward of ``example`` through ``model``, then remove the hook ``handles`` (also on error)."""
    try:
        with torch.no_grad():
            model(example)
    finally:
        for handle in handles:
            handle.remove()


def _conv_bn_pairs(model: nn.Module, example: torch.Tensor) -> list[tuple[nn.Conv2d, nn.modules.batchnorm._BatchNorm]]:
    """(conv, bn) pairs where the BN's input is exactly the convolution's output, found by running ``example``.

    Watching one forward pass, instead of matching attribute names, finds the pairs of any backbone (ResNet's
    ``conv1``/``bn1``, ``downsample.0``/``.1``, Lite0's ``_expand_conv``/``_bn0``, ...).
    """
    # the output tensors are kept alive until the pass ends, so that an id is never reused by another tensor
    outputs: dict[int, tuple[nn.Conv2d, torch.Tensor]] = {}
    pairs = []
    handles = []

    def conv_hook(module, _inputs, output):
        outputs[id(output)] = (module, output)

    def bn_hook(module, inputs):
        conv, output = outputs.get(id(inputs[0]), (None, None))
        if conv is not None and output is inputs[0]:
            pairs.append((conv, module))

    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            handles.append(module.register_forward_hook(conv_hook))
        elif isinstance(module, nn.modules.batchnorm._BatchNorm):
            handles.append(module.register_forward_pre_hook(bn_hook))
    run_with_hooks(model, example, handles)
    # a conv reused before several BNs (or a BN after several convs) cannot be folded into one of them
    convs = [id(c) for c, _ in pairs]
    bns = [id(b) for _, b in pairs]
    return [(c, b) for c, b in pairs if convs.count(id(c)) == 1 and bns.count(id(b)) == 1]


def fold_batchnorm(model: nn.Module, example: torch.Tensor) -> nn.Module:
    """A copy of ``model`` (in eval mode) with every BatchNorm that directly follows a convolution folded into it.

    Args:
        model: any module whose forward takes ``example``; its BNs must be in eval mode (running statistics), as a
            frozen CAM/IRN/segmentation network's are.
        example: a small input, e.g. (1, 3, 64, 64), used once to find which BN follows which convolution.
    Returns:
        The folded copy; the original is untouched. The folded BNs become ``nn.Identity``.
    Raises:
        RuntimeError: the folded copy's output on ``example`` differs from the original's (a folded convolution's
            output was also read by something other than its BN).
    """
    folded = copy.deepcopy(model).eval()
    with torch.no_grad():
        want = _tensors(folded(example))  # the unfolded copy's output, to check the folding against
    pairs = _conv_bn_pairs(folded, example)
    bn_ids = {id(bn) for _, bn in pairs}
    with torch.no_grad():
        for conv, bn in pairs:
            scale = bn.weight / torch.sqrt(bn.running_var + bn.eps) if bn.affine else \
                torch.rsqrt(bn.running_var + bn.eps)
            shift = (bn.bias if bn.affine else 0) - bn.running_mean * scale
            weight = conv.weight * scale.view(-1, 1, 1, 1)
            bias = shift if conv.bias is None else conv.bias * scale + shift
            conv.weight = nn.Parameter(weight.to(memory_format=torch.channels_last)
                                       if conv.weight.is_contiguous(memory_format=torch.channels_last) else weight,
                                       requires_grad=False)
            conv.bias = nn.Parameter(bias.detach().clone(), requires_grad=False)
    for parent in folded.modules():
        for name, child in list(parent.named_children()):
            if id(child) in bn_ids:
                setattr(parent, name, nn.Identity())
    # Folding assumes nothing but the BN reads the convolution's output (true of every network here); check it on
    # the example rather than trust it.
    with torch.no_grad():
        got = _tensors(folded(example))
    for w, g in zip(want, got):
        scale = float(w.abs().max()) if w.numel() else 0.0
        if w.shape != g.shape or (w - g).abs().max() > 1e-3 * scale + 1e-6:
            raise RuntimeError("fold_batchnorm changed the network's output: a folded convolution's output must "
                               "feed nothing but its BatchNorm")
    return folded


def _tensors(output) -> list[torch.Tensor]:
    """The tensors of a module's output (a tensor, or nested tuples / lists of them)."""
    if isinstance(output, torch.Tensor):
        return [output.float()]
    if isinstance(output, (tuple, list)):
        return [t for item in output for t in _tensors(item)]
    return []


def _is_pointwise(weight: torch.Tensor, stride, padding, groups: int) -> bool:
    return weight.shape[-2:] == (1, 1) and groups == 1 and tuple(stride) == (1, 1) and tuple(padding) == (0, 0)


class _InputGradConv(torch.autograd.Function):
    """conv2d whose backward returns only the input gradient and whose forward saves no activation.

    ``flipped`` (bool): for a stride-1 convolution with symmetric padding p = d·(k - 1)/2 (every stride-1 conv of the
    backbones here), the input gradient is the same convolution of dy with the transposed, spatially flipped kernel,
    which oneDNN's forward kernels compute up to 5× faster than the dedicated backward one for depthwise convs.
    False: ``torch.nn.grad.conv2d_input`` (strided convs).
    """

    @staticmethod
    def forward(ctx, x, weight, bias, flipped, stride, padding, dilation, groups):
        ctx.conv = (weight, flipped, stride, padding, dilation, groups)
        ctx.input_shape = x.shape
        ctx.channels_last = x.is_contiguous(memory_format=torch.channels_last)
        if ctx.channels_last and _is_pointwise(weight, stride, padding, groups):
            # a 1×1 convolution on channels_last memory is one GEMM over (N·H·W, C) rows, with no layout copies
            n, c_in, h, w = x.shape
            rows = x.permute(0, 2, 3, 1).reshape(-1, c_in)  # a view: channels_last is NHWC in memory
            w2 = weight.view(weight.shape[0], c_in).t()  # (C_in, C_out)
            # written into a channels_last tensor of its own (not a view), so later in-place ops are allowed
            out = torch.empty((n, weight.shape[0], h, w), dtype=x.dtype, device=x.device,
                              memory_format=torch.channels_last)
            out_rows = out.permute(0, 2, 3, 1).view(-1, weight.shape[0])
            if bias is None:
                torch.mm(rows, w2, out=out_rows)
            else:
                torch.addmm(bias, rows, w2, out=out_rows)
            return out
        return F.conv2d(x, weight, bias, stride, padding, dilation, groups)

    @staticmethod
    def backward(ctx, grad_out):
        weight, flipped, stride, padding, dilation, groups = ctx.conv
        if _is_pointwise(weight, stride, padding, groups):
            # a 1×1 convolution is a matmul over channels: dx = dy · W, on (N·H·W, C) rows in channels_last memory
            n, _, h, w = grad_out.shape
            rows = grad_out.permute(0, 2, 3, 1).reshape(-1, grad_out.shape[1])  # (NHW, C_out)
            dx = rows @ weight.view(weight.shape[0], -1)  # (NHW, C_in)
            dx = dx.view(n, h, w, -1).permute(0, 3, 1, 2)  # (N, C_in, H, W), channels_last strides
            if not ctx.channels_last:
                dx = dx.contiguous()
        elif flipped:
            dx = F.conv2d(grad_out, _backward_kernel(weight, groups), None, 1, padding, dilation, groups)
        else:
            dx = torch.nn.grad.conv2d_input(ctx.input_shape, weight, grad_out, stride, padding, dilation, groups)
        return dx, None, None, None, None, None, None, None


def _flipped_backward_applies(conv: nn.Conv2d) -> bool:
    """A stride-1 'same' convolution (padding = dilation · (k - 1) / 2): its input gradient is a forward conv."""
    if tuple(conv.stride) != (1, 1) or isinstance(conv.padding, str) or conv.padding_mode != "zeros":
        return False
    return all(2 * p == d * (k - 1) for p, d, k in zip(conv.padding, conv.dilation, conv.kernel_size))


def _backward_kernel(weight: torch.Tensor, groups: int) -> torch.Tensor:
    """The transposed, flipped kernel (C_in, C_out / groups, kh, kw), built per backward call (a few MB at most;
    keeping it would hold a second copy of every weight)."""
    out_ch, in_per_group, kh, kw = weight.shape
    back = weight.detach().view(groups, out_ch // groups, in_per_group, kh, kw).transpose(1, 2)
    back = back.reshape(groups * in_per_group, out_ch // groups, kh, kw).flip(-1, -2)
    return back.contiguous(memory_format=torch.channels_last)


def _input_grad_conv_forward(self, x, weight, bias):
    if self.padding_mode != "zeros":
        x = F.pad(x, self._reversed_padding_repeated_twice, mode=self.padding_mode)
        return _InputGradConv.apply(x, weight, bias, False, self.stride, 0, self.dilation, self.groups)
    return _InputGradConv.apply(x, weight, bias, self._flipped_backward, self.stride, self.padding, self.dilation,
                                self.groups)


class _MaskedClamp(torch.autograd.Function):
    """Clamp (ReLU: [0, inf), ReLU6: [0, 6]) that keeps a 1-byte mask of the pixels the gradient passes.

    ReLU clamps in place; ReLU6 writes a new tensor and reads its mask as ``clamp(x) == x`` (one pass instead of
    three; it differs from autograd's ``0 < x < 6`` only where x is exactly 0 or 6).
    """

    @staticmethod
    def forward(ctx, x, high):
        if high is None:
            passes = x > 0
            ctx.mark_dirty(x)
            out = x.clamp_(min=0)
        else:
            out = x.clamp(0, high)
            passes = out == x
        ctx.save_for_backward(passes)
        return out

    @staticmethod
    def backward(ctx, grad_out):
        (passes,) = ctx.saved_tensors
        # a uint8 view multiplies faster than the bool tensor (no promotion copy) and than torch.where
        return grad_out * passes.view(torch.uint8), None


class MaskedActivation(nn.Module):
    """ReLU / ReLU6 for input-gradient networks: the same values, a 1-byte instead of a 4-byte saved tensor."""

    def __init__(self, high: float | None, inplace: bool = False):
        super().__init__()
        self.high = high
        self.inplace = inplace

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (torch.is_grad_enabled() and x.requires_grad):
            return x.clamp_(0, self.high) if self.inplace else x.clamp(0, self.high)
        # autograd forbids an in-place op on a leaf that requires grad; copy once in that (first-layer) case
        return _MaskedClamp.apply(x if x.grad_fn is not None or self.high is not None else x.clone(), self.high)

    def extra_repr(self) -> str:
        return f"high={self.high}"


def input_gradient_network(model: nn.Module, example: torch.Tensor) -> nn.Module:
    """A frozen copy of ``model`` for gradients w.r.t. its input only (AdvCAM's climb): same outputs and input
    gradients up to float32 rounding, with less time and memory (see the module docstring).

    Args:
        model: an eval-mode network (BatchNorms on running statistics); its parameters are never trained here.
        example: a small input for :func:`fold_batchnorm`, e.g. (1, 3, 64, 64) on the model's device.
    Returns:
        The copy: parameters with ``requires_grad=False``, convolutions patched, activations replaced.
    """
    fast = fold_batchnorm(model, example)
    for param in fast.parameters():
        param.requires_grad_(False)
    for module in fast.modules():
        if isinstance(module, nn.Conv2d):
            module._flipped_backward = _flipped_backward_applies(module)
            module._conv_forward = types.MethodType(_input_grad_conv_forward, module)
    for parent in fast.modules():
        for name, child in list(parent.named_children()):
            if isinstance(child, nn.ReLU6):
                setattr(parent, name, MaskedActivation(6.0, child.inplace))
            elif isinstance(child, nn.ReLU):
                setattr(parent, name, MaskedActivation(None, child.inplace))
    return fast
