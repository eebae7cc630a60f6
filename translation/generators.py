"""Image-to-image generators and the normalisation layers they share.

- :class:`ResnetGenerator`: the CycleGAN generator of Zhu et al. 2017 (after Johnson et al. 2016):
  ``c7s1-k, d2k, d4k, R4k x n, u2k, uk, c7s1-out`` with reflection padding, instance norm and a final ``tanh``.
- :class:`UnetGenerator`: the pix2pix U-Net generator (Isola et al. 2017) with skip connections.
- :class:`InstanceNorm2d`, :class:`LayerNorm2d`, :func:`adaptive_instance_norm`: normalisation by torch's fused
  ``group_norm`` kernel (instance norm is C groups, layer norm one group) run in float32 whatever the input dtype, so
  bf16 autocast does not degrade it; outputs keep the input dtype and memory format (channels_last works).

References:
    Zhu, Park, Isola, Efros. Unpaired Image-to-Image Translation using Cycle-Consistent Adversarial Networks. ICCV 2017.
    Isola, Zhu, Zhou, Efros. Image-to-Image Translation with Conditional Adversarial Networks. CVPR 2017.
    Huang, Belongie. Arbitrary Style Transfer in Real-time with Adaptive Instance Normalization. ICCV 2017.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

NORMS = ("instance", "layer", "none")
PADDINGS = ("reflect", "replicate", "zeros")


def check_int(name: str, value: object, minimum: int) -> int:
    """Return ``value`` if it is an int >= ``minimum``.

    Raises:
        ValueError: "expected <name> >= <minimum>, got <value>".
    """
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"expected {name} >= {minimum} (an int), got {value!r}")
    return value


def check_choice(name: str, value: object, choices: tuple[str, ...]) -> str:
    """Return ``value`` if it is one of ``choices``.

    Raises:
        ValueError: naming the valid choices.
    """
    if value not in choices:
        raise ValueError(f"expected {name} in {choices}, got {value!r}")
    return value  # type: ignore[return-value]


def check_float(name: str, value: object, minimum: float = 0.0, maximum: float | None = None) -> float:
    """Return ``float(value)`` if ``minimum <= value (<= maximum)``.

    Raises:
        ValueError: "expected <name> >= <minimum>, got <value>".
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < minimum:
        raise ValueError(f"expected {name} >= {minimum}, got {value!r}")
    if maximum is not None and value > maximum:
        raise ValueError(f"expected {name} <= {maximum}, got {value!r}")
    return float(value)


def check_image(x: Tensor, channels: int, what: str = "x", divisor: int = 1) -> None:
    """Check that ``x`` is a ``[B, channels, H, W]`` tensor with H, W multiples of ``divisor``.

    Raises:
        ValueError: with the expected and actual shape.
    """
    if not isinstance(x, Tensor) or x.dim() != 4 or x.shape[1] != channels:
        shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise ValueError(f"expected {what} of shape [B, {channels}, H, W], got {shape}")
    if x.shape[-2] % divisor or x.shape[-1] % divisor:
        raise ValueError(
            f"expected {what} height and width to be multiples of {divisor}, got {tuple(x.shape[-2:])}; "
            "resize or pad the images"
        )


class InstanceNorm2d(nn.Module):
    """Instance normalisation with float32 statistics (Ulyanov et al. 2016).

    Unlike ``torch.nn.InstanceNorm2d`` it accepts a 1x1 spatial size (output: the bias) and always normalises in
    float32, returning the input dtype. Computed as a group norm with one group per channel.

    Args:
        num_features: number of channels C.
        affine: learn a per-channel scale and shift.
        eps: added to the variance.

    Shape:
        ``[B, C, H, W] -> [B, C, H, W]``.
    """

    def __init__(self, num_features: int, affine: bool = False, eps: float = 1e-5) -> None:
        super().__init__()
        self.num_features = check_int("num_features", num_features, 1)
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(num_features)) if affine else None
        self.bias = nn.Parameter(torch.zeros(num_features)) if affine else None

    def forward(self, x: Tensor) -> Tensor:
        return _group_norm(x, x.shape[1], self.weight, self.bias, self.eps).to(x.dtype)


class LayerNorm2d(nn.Module):
    """Layer normalisation over (C, H, W) per sample with a per-channel affine, float32 statistics (MUNIT's decoder).

    Args:
        num_features: number of channels C.
        eps: added to the variance.

    Shape:
        ``[B, C, H, W] -> [B, C, H, W]``.
    """

    def __init__(self, num_features: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.num_features = check_int("num_features", num_features, 1)
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(num_features))
        self.bias = nn.Parameter(torch.zeros(num_features))

    def forward(self, x: Tensor) -> Tensor:
        return _group_norm(x, 1, self.weight, self.bias, self.eps).to(x.dtype)


def _group_norm(x: Tensor, groups: int, weight: Tensor | None, bias: Tensor | None, eps: float) -> Tensor:
    """Normalise ``x`` over each of ``groups`` channel groups and (H, W) with ``torch.group_norm``, in float32.

    The explicit upcast is what keeps bf16 autocast safe: CPU autocast has no policy for ``group_norm`` (a bf16 input
    would run the kernel, its per-channel affine and its backward in bf16), while CUDA autocast upcasts it to float32
    itself. ``torch.group_norm`` is called rather than ``F.group_norm``, whose Python check rejects one value per
    group (batch 1 at 1x1), which :class:`InstanceNorm2d` accepts. For float32 inputs the casts are no-ops.

    A group of one value normalises to exactly 0 with a zero gradient; it is computed as such, since the fused
    backward returns there float32 round-off amplified by ``1 / sqrt(eps)`` (about 3e-5) instead of 0.

    Shape:
        ``[B, C, H, W] -> [B, C, H, W]`` in float32, the memory format of ``x``.
    """
    xf = x.float()
    weight = weight.float() if weight is not None else None
    bias = bias.float() if bias is not None else None
    if x.shape[1] // groups * x.shape[2] * x.shape[3] > 1:
        return torch.group_norm(xf, groups, weight, bias, eps, torch.backends.cudnn.enabled)
    y = xf * 0
    return y if weight is None else torch.addcmul(bias.view(1, -1, 1, 1), y, weight.view(1, -1, 1, 1))


def adaptive_instance_norm(x: Tensor, scale: Tensor, shift: Tensor, eps: float = 1e-5) -> Tensor:
    """AdaIN (Huang & Belongie 2017): instance-normalise ``x`` then apply per-sample ``(1 + scale)`` and ``shift``.

    Statistics and the affine are computed in float32; the result has ``x``'s dtype. The scale is applied as
    ``1 + scale`` so that a freshly initialised MLP (outputs near 0) starts from plain instance norm.

    Args:
        x: features.
        scale: per-sample, per-channel scale offsets.
        shift: per-sample, per-channel shifts.
        eps: added to the variance.

    Returns:
        The modulated features.

    Shape:
        x ``[B, C, H, W]``, scale and shift ``[B, C]`` -> ``[B, C, H, W]``.
    """
    if scale.shape != (x.shape[0], x.shape[1]) or shift.shape != scale.shape:
        raise ValueError(
            f"expected AdaIN scale and shift of shape {(x.shape[0], x.shape[1])}, got {tuple(scale.shape)} and "
            f"{tuple(shift.shape)}"
        )
    y = _group_norm(x, x.shape[1], None, None, eps)
    y = torch.addcmul(shift.float()[:, :, None, None], y, 1.0 + scale.float()[:, :, None, None])
    return y.to(x.dtype)


def make_norm(norm: str, channels: int) -> nn.Module:
    """Return the normalisation layer named ``norm`` ("instance", "layer" or "none") for ``channels``."""
    check_choice("norm", norm, NORMS)
    if norm == "instance":
        return InstanceNorm2d(channels)
    if norm == "layer":
        return LayerNorm2d(channels)
    return nn.Identity()


def conv_block(
    in_channels: int,
    out_channels: int,
    kernel_size: int,
    stride: int = 1,
    norm: str = "instance",
    activation: str = "relu",
    padding_mode: str = "reflect",
) -> nn.Sequential:
    """Padding + conv + norm + activation, the building block of every generator here.

    Args:
        in_channels: input channels.
        out_channels: output channels.
        kernel_size: odd kernel size; padding keeps the size (divided by ``stride``).
        stride: convolution stride.
        norm: "instance", "layer" or "none".
        activation: "relu", "lrelu" (slope 0.2), "tanh" or "none".
        padding_mode: "reflect", "replicate" or "zeros".

    Returns:
        The block as an ``nn.Sequential``.
    """
    check_choice("padding_mode", padding_mode, PADDINGS)
    layers: list[nn.Module] = []
    pad = kernel_size // 2
    if padding_mode == "reflect":
        layers.append(nn.ReflectionPad2d(pad))
    elif padding_mode == "replicate":
        layers.append(nn.ReplicationPad2d(pad))
    else:
        layers.append(nn.ZeroPad2d(pad))
    layers.append(nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride))
    layers.append(make_norm(norm, out_channels))
    layers.append(make_activation(activation))
    return nn.Sequential(*layers)


def make_activation(activation: str) -> nn.Module:
    """Return the activation named ``activation`` ("relu", "lrelu", "tanh", "none")."""
    check_choice("activation", activation, ("relu", "lrelu", "tanh", "none"))
    if activation == "relu":
        return nn.ReLU(inplace=True)
    if activation == "lrelu":
        return nn.LeakyReLU(0.2, inplace=True)
    if activation == "tanh":
        return nn.Tanh()
    return nn.Identity()


class ResidualBlock(nn.Module):
    """Two 3x3 conv blocks with a skip connection (``R`` in CycleGAN's notation).

    Args:
        channels: channels in and out.
        norm: "instance", "layer" or "none".
        padding_mode: "reflect", "replicate" or "zeros".
        dropout: dropout probability between the two convolutions.

    Shape:
        ``[B, C, H, W] -> [B, C, H, W]``.
    """

    def __init__(self, channels: int, norm: str = "instance", padding_mode: str = "reflect", dropout: float = 0.0):
        super().__init__()
        check_int("channels", channels, 1)
        check_float("dropout", dropout, 0.0, 1.0)
        self.body = nn.Sequential(
            conv_block(channels, channels, 3, norm=norm, activation="relu", padding_mode=padding_mode),
            nn.Dropout(dropout) if dropout > 0 else nn.Identity(),
            conv_block(channels, channels, 3, norm=norm, activation="none", padding_mode=padding_mode),
        )

    def forward(self, x: Tensor) -> Tensor:
        return x + self.body(x)


class ResnetEncoder(nn.Module):
    """``c7s1-k, d2k, ..., R x n_blocks``: the first half of the ResNet generator (also UNIT/MUNIT content encoder).

    Args:
        in_channels: image channels.
        base_channels: channels k of the first layer; doubled at each downsampling.
        n_downsampling: number of stride-2 3x3 convolutions.
        n_blocks: residual blocks at the bottleneck (0 allowed).
        norm: "instance", "layer" or "none".
        padding_mode: "reflect", "replicate" or "zeros".
        dropout: dropout inside residual blocks.

    Shape:
        ``[B, in_channels, H, W] -> [B, out_channels, H / 2**n_downsampling, W / 2**n_downsampling]``.
    """

    def __init__(
        self,
        in_channels: int = 1,
        base_channels: int = 64,
        n_downsampling: int = 2,
        n_blocks: int = 9,
        norm: str = "instance",
        padding_mode: str = "reflect",
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        check_int("in_channels", in_channels, 1)
        check_int("base_channels", base_channels, 1)
        check_int("n_downsampling", n_downsampling, 0)
        check_int("n_blocks", n_blocks, 0)
        layers: list[nn.Module] = [conv_block(in_channels, base_channels, 7, norm=norm, padding_mode=padding_mode)]
        channels = base_channels
        for _ in range(n_downsampling):
            layers.append(conv_block(channels, channels * 2, 3, stride=2, norm=norm, padding_mode=padding_mode))
            channels *= 2
        layers += [ResidualBlock(channels, norm, padding_mode, dropout) for _ in range(n_blocks)]
        self.layers = nn.Sequential(*layers)
        self.out_channels = channels

    def forward(self, x: Tensor) -> Tensor:
        return self.layers(x)


class ResnetDecoder(nn.Module):
    """``R x n_blocks, u(k/2), ..., c7s1-out, tanh``: the second half of the ResNet generator.

    Args:
        in_channels: channels at the bottleneck.
        out_channels: image channels.
        n_upsampling: number of upsamplings, each halving the channels.
        n_blocks: residual blocks before the upsamplings (0 allowed).
        norm: normalisation after each upsampling ("instance", "layer" or "none").
        padding_mode: "reflect", "replicate" or "zeros".
        upsample: "transpose" (stride-2 transposed 3x3 convolution, as CycleGAN) or "nearest" (nearest x2 then a
            5x5 convolution, as MUNIT/UNIT, free of checkerboard artefacts).
        dropout: dropout inside residual blocks.

    Shape:
        ``[B, in_channels, h, w] -> [B, out_channels, h * 2**n_upsampling, w * 2**n_upsampling]``, in [-1, 1].
    """

    def __init__(
        self,
        in_channels: int = 256,
        out_channels: int = 1,
        n_upsampling: int = 2,
        n_blocks: int = 0,
        norm: str = "instance",
        padding_mode: str = "reflect",
        upsample: str = "transpose",
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        check_int("in_channels", in_channels, 1)
        check_int("out_channels", out_channels, 1)
        check_int("n_upsampling", n_upsampling, 0)
        check_int("n_blocks", n_blocks, 0)
        check_choice("upsample", upsample, ("transpose", "nearest"))
        if in_channels % (2**n_upsampling):
            raise ValueError(
                f"expected in_channels divisible by 2**n_upsampling = {2**n_upsampling}, got {in_channels}"
            )
        layers: list[nn.Module] = [ResidualBlock(in_channels, norm, padding_mode, dropout) for _ in range(n_blocks)]
        channels = in_channels
        for _ in range(n_upsampling):
            if upsample == "transpose":
                layers += [
                    nn.ConvTranspose2d(channels, channels // 2, 3, 2, padding=1, output_padding=1),
                    make_norm(norm, channels // 2),
                    nn.ReLU(inplace=True),
                ]
            else:
                layers += [
                    nn.Upsample(scale_factor=2, mode="nearest"),
                    conv_block(channels, channels // 2, 5, norm=norm, padding_mode=padding_mode),
                ]
            channels //= 2
        layers.append(conv_block(channels, out_channels, 7, norm="none", activation="tanh", padding_mode=padding_mode))
        self.layers = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.layers(x)


class ResnetGenerator(nn.Module):
    """The CycleGAN ResNet generator (Zhu et al. 2017, after Johnson et al. 2016).

    ``c7s1-64, d128, d256, R256 x n_blocks, u128, u64, c7s1-out, tanh`` for the defaults; 6 blocks for 128 px images
    and 9 for 256 px in the paper.

    Args:
        in_channels: input image channels (1 for radiographs).
        out_channels: output image channels.
        base_channels: channels of the first layer.
        n_downsampling: stride-2 downsamplings (and as many upsamplings).
        n_blocks: residual blocks at the bottleneck (>= 0).
        norm: "instance" (paper), "layer" or "none".
        padding_mode: "reflect" (paper), "replicate" or "zeros".
        upsample: "transpose" (paper) or "nearest".
        dropout: dropout inside residual blocks (0 in CycleGAN).

    Raises:
        ValueError: on a bad argument, or (forward) an input whose channels or size do not fit.

    Shape:
        ``[B, in_channels, H, W] -> [B, out_channels, H, W]`` with H, W multiples of ``2**n_downsampling``;
        output in [-1, 1].
    """

    def __init__(
        self,
        in_channels: int = 1,
        out_channels: int = 1,
        base_channels: int = 64,
        n_downsampling: int = 2,
        n_blocks: int = 9,
        norm: str = "instance",
        padding_mode: str = "reflect",
        upsample: str = "transpose",
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.in_channels = check_int("in_channels", in_channels, 1)
        self.required_divisor = 2 ** check_int("n_downsampling", n_downsampling, 0)
        self.encoder = ResnetEncoder(in_channels, base_channels, n_downsampling, n_blocks, norm, padding_mode, dropout)
        self.decoder = ResnetDecoder(
            self.encoder.out_channels, out_channels, n_downsampling, 0, norm, padding_mode, upsample, dropout
        )

    def forward(self, x: Tensor) -> Tensor:
        check_image(x, self.in_channels, "generator input", self.required_divisor)
        return self.decoder(self.encoder(x))


class UnetGenerator(nn.Module):
    """The pix2pix U-Net generator (Isola et al. 2017), offered by CycleGAN as ``unet_128`` / ``unet_256``.

    ``num_downs`` 4x4 stride-2 convolutions (channels ``base * min(2**i, 8)``), LeakyReLU 0.2 on the way down, ReLU
    and 4x4 transposed convolutions on the way up, skip connections by concatenation, ``tanh`` output. The innermost
    and outermost downsamplings have no normalisation, as in the paper. Convolutions use ``padding_mode``.

    Args:
        in_channels: input image channels.
        out_channels: output image channels.
        base_channels: channels of the first layer.
        num_downs: number of downsamplings; 7 for 128 px, 8 for 256 px images.
        norm: "instance" (CycleGAN), "layer" or "none".
        padding_mode: "reflect", "replicate" or "zeros".
        dropout: dropout in the three upsamplings after the innermost one (0 in CycleGAN, 0.5 in pix2pix).

    Raises:
        ValueError: on a bad argument, or (forward) an input whose size is not a multiple of ``2**num_downs``.

    Shape:
        ``[B, in_channels, H, W] -> [B, out_channels, H, W]``, H and W multiples of ``2**num_downs``; in [-1, 1].
    """

    def __init__(
        self,
        in_channels: int = 1,
        out_channels: int = 1,
        base_channels: int = 64,
        num_downs: int = 8,
        norm: str = "instance",
        padding_mode: str = "reflect",
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.in_channels = check_int("in_channels", in_channels, 1)
        check_int("out_channels", out_channels, 1)
        check_int("base_channels", base_channels, 1)
        check_int("num_downs", num_downs, 1)
        check_choice("norm", norm, NORMS)
        check_choice("padding_mode", padding_mode, PADDINGS)
        check_float("dropout", dropout, 0.0, 1.0)
        self.required_divisor = 2**num_downs
        mode = "zeros" if padding_mode == "zeros" else padding_mode
        widths = [base_channels * min(2**i, 8) for i in range(num_downs)]
        self.downs = nn.ModuleList()
        previous = in_channels
        for i, width in enumerate(widths):
            layers: list[nn.Module] = [] if i == 0 else [nn.LeakyReLU(0.2, inplace=False)]
            layers.append(nn.Conv2d(previous, width, 4, 2, 1, padding_mode=mode, bias=True))
            if 0 < i < num_downs - 1:
                layers.append(make_norm(norm, width))
            self.downs.append(nn.Sequential(*layers))
            previous = width
        self.ups = nn.ModuleList()
        for i in reversed(range(num_downs)):
            in_width = widths[i] if i == num_downs - 1 else 2 * widths[i]
            out_width = out_channels if i == 0 else widths[i - 1]
            layers = [nn.ReLU(inplace=False), nn.ConvTranspose2d(in_width, out_width, 4, 2, 1)]
            if i == 0:
                layers.append(nn.Tanh())
            else:
                layers.append(make_norm(norm, out_width))
                if dropout > 0 and max(1, num_downs - 4) <= i <= num_downs - 2:
                    layers.append(nn.Dropout(dropout))
            self.ups.append(nn.Sequential(*layers))

    def forward(self, x: Tensor) -> Tensor:
        check_image(x, self.in_channels, "generator input", self.required_divisor)
        skips = []
        for down in self.downs:
            x = down(x)
            skips.append(x)
        skips.pop()
        for i, up in enumerate(self.ups):
            if i > 0:
                x = torch.cat([x, skips.pop()], dim=1)
            x = up(x)
        return x


GENERATORS = {"resnet": ResnetGenerator, "unet": UnetGenerator}


def downsample2x(x: Tensor) -> Tensor:
    """3x3 average pooling with stride 2 that ignores padding (the multi-scale pyramid of pix2pixHD / MUNIT).

    Shape:
        ``[B, C, H, W] -> [B, C, ceil(H / 2), ceil(W / 2)]``.
    """
    return F.avg_pool2d(x, 3, stride=2, padding=1, count_include_pad=False)
