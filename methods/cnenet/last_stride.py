"""Last-stride surgery: make a ResNet's layer4 keep its input resolution (stride 1).

With stride 1 in layer4 a ResNet-50 at 224 px gives 14 x 14 feature maps instead of 7 x 7
(the re-identification "last stride" trick). Pure module surgery, weights untouched: the
stride-2 convolutions of layer4's first block (the 3x3 and the downsample 1x1) become stride 1,
and a stride-2 pooling in its downsample path (timm's avg_down) becomes an identity.
"""

from __future__ import annotations

from torch import nn

POOLS = (nn.AvgPool2d, nn.MaxPool2d)


def find_layer4(backbone: nn.Module) -> nn.Module:
    """The ``layer4`` of a torchvision/timm ResNet, possibly wrapped (e.g. ``backbone.body``)."""
    found = [module for name, module in backbone.named_modules() if name.split(".")[-1] == "layer4"]
    if len(found) != 1:
        raise ValueError(
            f"last_stride=1 needs a ResNet-style backbone with one `layer4` module (torchvision or "
            f"timm ResNet); {type(backbone).__name__} has {len(found)}. Use last_stride: 2."
        )
    return found[0]


def _is_two(stride: object) -> bool:
    return stride == 2 or stride == (2, 2)


def set_last_stride_one(backbone: nn.Module) -> int:
    """Turn layer4's stride 2 into 1 in place; returns how many modules were changed."""
    layer4 = find_layer4(backbone)
    first_block = next(iter(layer4.children()), None) if isinstance(layer4, nn.Sequential) else None
    if first_block is None:
        raise ValueError("last_stride=1: `layer4` is not a non-empty nn.Sequential of blocks")
    changed = 0
    for name, module in list(first_block.named_modules()):
        stride = getattr(module, "stride", None)
        if not _is_two(stride):
            continue
        if next(module.children(), None) is not None:  # a block's bookkeeping attribute
            module.stride = 1 if isinstance(stride, int) else (1, 1)
            continue
        if isinstance(module, nn.Conv2d):
            module.stride = (1, 1)
        elif isinstance(module, POOLS):
            parent_name, _, child = name.rpartition(".")
            setattr(
                first_block.get_submodule(parent_name) if parent_name else first_block,
                child,
                nn.Identity(),
            )
        else:
            raise ValueError(
                f"last_stride=1: layer4[0].{name} ({type(module).__name__}) has stride 2 and is "
                "neither a convolution nor a pooling; this backbone is not supported"
            )
        changed += 1
    if changed == 0:
        raise ValueError(
            "last_stride=1: layer4 already has stride 1 (a dilated backbone, e.g. a protocol "
            "output_stride below 32?); use last_stride: 2"
        )
    return changed
