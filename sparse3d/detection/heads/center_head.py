"""CenterPoint's dense head (OpenPCDet ``CenterHead``): a shared 3x3 conv, then per task
group a :class:`SeparateHead` predicting a class heatmap and the box code at every BEV cell;
its focal and L1 losses.

Module names and shapes are OpenPCDet's, so an OpenPCDet CenterPoint checkpoint's
``dense_head.*`` entries load into a ``dense_head`` attribute holding a :class:`CenterHead`.
Outputs and gradients do not depend on the thread count (the layers are
:class:`sparse3d.nn.conv2d.Conv2d` and :class:`sparse3d.nn.norm.BatchNorm2d`, the loss sums
:func:`sparse3d.core.column_sum.column_sum`).

Reference: Yin et al., "Center-based 3D Object Detection and Tracking", CVPR 2021
(https://arxiv.org/abs/2006.11275).
"""

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from sparse3d.core.column_sum import column_sum
from sparse3d.core.elementwise import sigmoid
from sparse3d.data.nuscenes.classes import DETECTION_NAMES
from sparse3d.detection.targets import BevGrid, CenterTargets, center_targets
from sparse3d.engine.config import at_least, between, check_ranges, positive
from sparse3d.engine.distributed import all_reduce_sum, process_group_size
from sparse3d.nn.conv2d import Conv2d, shared_input_conv2d
from sparse3d.nn.norm import BatchNorm2d

REGRESSION_HEADS: tuple[tuple[str, int], ...] = (("center", 2), ("center_z", 1), ("dim", 3), ("rot", 2), ("vel", 2))
"""Regression sub-heads and their output channels, in registration order (OpenPCDet
HEAD_DICT / HEAD_ORDER); concatenated they give the box code of
:data:`sparse3d.detection.targets.BOX_CODE_SIZE` values: centre offset (x, y) in cells, z
(m), log (dx, dy, dz), (cos, sin) of the yaw, (vx, vy) (m/s). The heatmap sub-head ``hm``
is registered after them."""

NUSCENES_TASK_GROUPS: tuple[tuple[str, ...], ...] = (
    ("car",), ("truck", "construction_vehicle"), ("bus", "trailer"), ("barrier",),
    ("motorcycle", "bicycle"), ("pedestrian", "traffic_cone"),
)
"""CenterPoint's six nuScenes task groups (OpenPCDet CLASS_NAMES_EACH_HEAD)."""


@dataclass
class CenterHeadConfig:
    """CenterHead structure, targets, losses and decoding (OpenPCDet's CenterPoint
    voxel0075 nuScenes values by default)."""

    class_names_each_head: tuple[tuple[str, ...], ...] = NUSCENES_TASK_GROUPS
    """Class names of each task group, in heatmap-channel order; together they must name
    every class of the detector exactly once."""
    shared_channels: int = field(default=64, metadata=at_least(1))
    """Channels of the shared conv and of every sub-head's hidden convs (SHARED_CONV_CHANNEL)."""
    use_bias_before_norm: bool = True
    """Give the convs followed by batch norm a bias (USE_BIAS_BEFORE_NORM)."""
    num_conv: int = field(default=2, metadata=at_least(1))
    """Convolutions per regression sub-head, the output conv included (HEAD_DICT num_conv):
    num_conv - 1 hidden conv-BN-ReLU layers, then the output conv."""
    num_hm_conv: int = field(default=2, metadata=at_least(1))
    """Convolutions of the heatmap sub-head, the output conv included (NUM_HM_CONV)."""
    hm_init_bias: float = -2.19
    """Initial bias of the heatmap output conv: sigmoid(-2.19) ~ 0.1, a prior of rare objects."""
    bn_eps: float = field(default=1e-5, metadata=positive())
    """Batch-norm epsilon (BN_EPS)."""
    bn_momentum: float = field(default=0.1, metadata=between(0, 1))
    """Batch-norm running-statistics momentum (BN_MOM)."""
    max_objs: int = field(default=500, metadata=at_least(1))
    """Target slots per sample and head; GT boxes beyond the first max_objs of a head are
    ignored (NUM_MAX_OBJS)."""
    gaussian_overlap: float = field(default=0.1, metadata=between(0, 1, closed=False))
    """``min_overlap`` of the heatmap Gaussian radius (GAUSSIAN_OVERLAP)."""
    min_radius: int = field(default=2, metadata=at_least(0))
    """Smallest heatmap Gaussian radius, cells (MIN_RADIUS)."""
    cls_weight: float = field(default=1.0, metadata=at_least(0))
    """Weight of each head's heatmap focal loss."""
    loc_weight: float = field(default=0.25, metadata=at_least(0))
    """Weight of each head's code-weighted regression loss."""
    code_weights: tuple[float, ...] = field(default=(1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.2, 0.2, 1.0, 1.0), metadata=at_least(0))
    """Per-channel weights of the 10 regression losses, in box-code order; the 0.2 fall on
    (cos, sin) of the yaw."""
    score_thresh: float = field(default=0.1, metadata=between(0, 1))
    """Decoded boxes keep scores strictly above this."""
    post_center_range: tuple[float, ...] = (-61.2, -61.2, -10.0, 61.2, 61.2, 10.0)
    """Decoded boxes keep centres inside [x0, y0, z0, x1, y1, z1] (bounds included), metres."""
    max_obj_per_sample: int = field(default=500, metadata=at_least(1))
    """K of decoding: top K cells per class, then top K over a head's classes."""

    def __post_init__(self) -> None:
        check_ranges(self)
        names = [name for group in self.class_names_each_head for name in group]
        if not self.class_names_each_head or any(not group for group in self.class_names_each_head):
            raise ValueError(f"CenterHeadConfig.class_names_each_head: every head needs a class, got {self.class_names_each_head}")
        if len(set(names)) != len(names):
            raise ValueError(f"CenterHeadConfig.class_names_each_head: a class is in two heads: {self.class_names_each_head}")
        if len(self.code_weights) != sum(c for _, c in REGRESSION_HEADS):
            raise ValueError(f"CenterHeadConfig.code_weights: expected 10 weights, got {len(self.code_weights)}")
        if len(self.post_center_range) != 6:
            raise ValueError(f"CenterHeadConfig.post_center_range: expected 6 values, got {len(self.post_center_range)}")


def class_ids_each_head(config: CenterHeadConfig, class_names: Sequence[str] = DETECTION_NAMES) -> list[list[int]]:
    """Per head, the 0-based global class ids (indices into ``class_names``) of its heatmap
    channels, in channel order.

    Raises:
        ValueError: if the heads do not name every class of ``class_names`` exactly once.
    """
    grouped = [name for group in config.class_names_each_head for name in group]
    if sorted(grouped) != sorted(class_names):
        raise ValueError(
            f"CenterHead: class_names_each_head {config.class_names_each_head} must name each of "
            f"{list(class_names)} exactly once"
        )
    return [[list(class_names).index(name) for name in group] for group in config.class_names_each_head]


def _conv_bn_relu(in_channels: int, out_channels: int, config: CenterHeadConfig) -> nn.Sequential:
    """Conv2d(3x3, padding 1) -> BatchNorm2d -> ReLU (entries 0, 1, 2)."""
    return nn.Sequential(
        Conv2d(in_channels, out_channels, 3, padding=1, bias=config.use_bias_before_norm),
        BatchNorm2d(out_channels, eps=config.bn_eps, momentum=config.bn_momentum),
        nn.ReLU(),
    )


def _sub_head(channels: int, out_channels: int, num_conv: int, config: CenterHeadConfig) -> nn.Sequential:
    """num_conv - 1 hidden conv-BN-ReLU blocks (indices 0..), then the 3x3 output conv."""
    hidden = [_conv_bn_relu(channels, channels, config) for _ in range(num_conv - 1)]
    return nn.Sequential(*hidden, Conv2d(channels, out_channels, 3, padding=1, bias=True))


class SeparateHead(nn.Module):
    """One task group's predictions: a sub-head per output of :data:`REGRESSION_HEADS`,
    then ``hm`` (heatmap logits, one channel per class of the group).

    Initialisation as OpenPCDet: the regression sub-heads' convs get Kaiming-normal weights
    and zero biases; the heatmap's output bias is ``config.hm_init_bias``, its other
    parameters keep torch's default initialisation.

    Args:
        channels: input channels (the shared conv's width).
        num_classes: heatmap channels.
        config: widths, conv counts, batch-norm settings.
    """

    def __init__(self, channels: int, num_classes: int, config: CenterHeadConfig):
        super().__init__()
        for name, out_channels in REGRESSION_HEADS:
            sub_head = _sub_head(channels, out_channels, config.num_conv, config)
            for module in sub_head.modules():
                if isinstance(module, nn.Conv2d):
                    nn.init.kaiming_normal_(module.weight)
                    if module.bias is not None:
                        nn.init.zeros_(module.bias)
            self.add_module(name, sub_head)
        self.hm = _sub_head(channels, num_classes, config.num_hm_conv, config)
        nn.init.constant_(self.hm[-1].bias, config.hm_init_bias)

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        """Predictions at every cell.

        Args:
            x: float [B, C, H, W] shared features.

        Returns:
            ``center`` [B, 2, H, W], ``center_z`` [B, 1, H, W], ``dim`` [B, 3, H, W],
            ``rot`` [B, 2, H, W], ``vel`` [B, 2, H, W], ``hm`` [B, n_cls, H, W] (logits);
            the meaning of each is in :data:`REGRESSION_HEADS`.
        """
        return {name: sub_head(x) for name, sub_head in self.named_children()}

    def first_convs(self) -> list[Conv2d]:
        """The first conv of each sub-head (in :meth:`forward`'s order): all read the input."""
        return [sub_head[0][0] if sub_head[0] is not sub_head[-1] else sub_head[0] for sub_head in self.children()]

    def finish(self, first_outputs: list[Tensor]) -> dict[str, Tensor]:
        """:meth:`forward` continued from the outputs of :meth:`first_convs`."""
        out = {}
        for (name, sub_head), y in zip(self.named_children(), first_outputs):
            if sub_head[0] is not sub_head[-1]:  # a hidden block: its BN and ReLU, then the rest
                y = sub_head[1:](sub_head[0][1:](y))
            out[name] = y
        return out


class CenterHead(nn.Module):
    """CenterPoint's multi-group dense head over a BEV feature map.

    Args:
        config: structure, targets, loss weights.
        in_channels: channels of the BEV features (512 after OpenPCDet's BaseBEVBackbone).
        class_names: the detector's classes; labels are 0-based indices into it.

    Attributes:
        class_names: tuple of the detector's classes.
        class_ids_each_head: per task group, the global class ids of its heatmap channels
            (:func:`class_ids_each_head`).

    Examples:
        >>> head = CenterHead(CenterHeadConfig(), in_channels=512)
        >>> len(head.state_dict())
        331
    """

    def __init__(self, config: CenterHeadConfig, in_channels: int = 512, class_names: Sequence[str] = DETECTION_NAMES):
        super().__init__()
        self.config = config
        self.class_names = tuple(class_names)
        self.class_ids_each_head = class_ids_each_head(config, self.class_names)
        self.shared_conv = _conv_bn_relu(in_channels, config.shared_channels, config)
        self.heads_list = nn.ModuleList(
            SeparateHead(config.shared_channels, len(ids), config) for ids in self.class_ids_each_head
        )

    def forward(self, bev: Tensor) -> list[dict[str, Tensor]]:
        """Per-head predictions (see :meth:`SeparateHead.forward`) at every BEV cell.

        Args:
            bev: float [B, in_channels, H, W] BEV features; column = x, row = y.

        Returns:
            one dict per task group, in ``config.class_names_each_head`` order.
        """
        in_channels = self.shared_conv[0].in_channels
        if bev.dim() != 4 or bev.shape[1] != in_channels:
            raise ValueError(f"CenterHead: bev must be [B, {in_channels}, H, W], got {list(bev.shape)}")
        shared = self.shared_conv(bev)
        # Every sub-head starts with a 3x3 conv of the shared map: unfold it once for all
        # (the same results as running the sub-heads one by one, at a fraction of the cost).
        firsts = [head.first_convs() for head in self.heads_list]
        outputs = iter(shared_input_conv2d(shared, [conv for convs in firsts for conv in convs]))
        return [head.finish([next(outputs) for _ in convs]) for head, convs in zip(self.heads_list, firsts)]

    def targets(self, gt_boxes: Sequence[Tensor], gt_labels: Sequence[Tensor], grid: BevGrid) -> list[CenterTargets]:
        """:func:`sparse3d.detection.targets.center_targets` with this head's groups and
        target settings.

        Args:
            gt_boxes: per sample float [M_b, 9] (x, y, z, dx, dy, dz, yaw, vx, vy), LiDAR frame.
            gt_labels: per sample int64 [M_b], indices into ``class_names``.
            grid: the feature map of the head's input.
        """
        config = self.config
        return center_targets(
            gt_boxes, gt_labels, grid, self.class_ids_each_head, config.max_objs, config.gaussian_overlap, config.min_radius
        )

    def loss(self, preds: list[dict[str, Tensor]], targets: list[CenterTargets]) -> dict[str, Tensor]:
        """The training losses, per head.

        Per head t: ``hm_loss_head_t`` = cls_weight * :func:`heatmap_focal_loss` and
        ``loc_loss_head_t`` = loc_weight * sum(code_weights * :func:`box_regression_loss`).
        The total loss is the sum of all the values (OpenPCDet's ``rpn_loss``); no total is
        included, because the trainer minimises the sum of the dict it is given.

        In training mode under ``torch.distributed`` with W > 1 processes, each holding a
        share of the batch, the normalisers (positives, objects) are those of the whole
        batch and every value is multiplied by W: the average over processes of the values
        and of their gradients (what the trainer takes) is then the loss of the whole batch
        and its gradient. Every process must call this then, as the trainer does.

        Args:
            preds: :meth:`forward`'s output.
            targets: :meth:`targets` for the same batch and grid.

        Returns:
            scalar float tensors, ``hm_loss_head_0``, ``loc_loss_head_0``, ``hm_loss_head_1``, ...
        """
        if len(preds) != len(self.heads_list) or len(targets) != len(self.heads_list):
            raise ValueError(f"CenterHead.loss: expected {len(self.heads_list)} heads, got {len(preds)} predictions, {len(targets)} targets")
        for t, (pred, target) in enumerate(zip(preds, targets)):
            if pred["hm"].shape != target.heatmap.shape:
                raise ValueError(
                    f"CenterHead.loss: head {t} predicts a heatmap {list(pred['hm'].shape)} but its targets are "
                    f"{list(target.heatmap.shape)} (is the BevGrid that of the head's input?)"
                )
        code_weights = preds[0]["hm"].new_tensor(self.config.code_weights)
        world = process_group_size() if self.training else 1
        # Per head, the heatmap's positives and the regression's objects: int64 [T, 2],
        # summed over processes in one collective (exact, so the same on every process).
        counts = torch.stack([torch.stack([target.heatmap.eq(1).sum(), target.mask.sum()]) for target in targets])
        if world > 1:
            counts = all_reduce_sum(counts)
        losses = {}
        for t, (pred, target) in enumerate(zip(preds, targets)):
            box_maps = torch.cat([pred[name] for name, _ in REGRESSION_HEADS], dim=1)  # [B, 10, H, W]
            reg = box_regression_loss(box_maps, target, counts[t, 1])  # [10]
            hm_loss = self.config.cls_weight * heatmap_focal_loss(pred["hm"], target.heatmap, counts[t, 0])
            # 10 products: one thread sums them, whatever the thread count.
            loc_loss = self.config.loc_weight * (reg * code_weights).sum()
            if world > 1:
                # The whole batch's loss is (sum over processes of each one's unnormalised
                # sum) / (global count). Here this process's sum / global count is its
                # share of that; the trainer averages over the W processes, i.e. divides
                # the sum of shares by W, so each share is multiplied by W beforehand.
                hm_loss, loc_loss = hm_loss * world, loc_loss * world
            losses[f"hm_loss_head_{t}"], losses[f"loc_loss_head_{t}"] = hm_loss, loc_loss
        return losses


def heatmap_focal_loss(logits: Tensor, heatmap: Tensor, num_pos: Tensor | None = None) -> Tensor:
    """CornerNet's focal loss of heatmap logits against Gaussian targets (OpenPCDet
    FocalLossCenterNet).

    With p = clamp(sigmoid(logits), 1e-4, 1 - 1e-4), positives gt == 1 and N_pos their
    count: loss = -(sum_pos log(p) (1 - p)^2 + sum_{gt<1} log(1 - p) p^2 (1 - gt)^4) / max(N_pos, 1).

    Args:
        logits: float [B, C, H, W] predicted logits.
        heatmap: float [B, C, H, W] targets in [0, 1].
        num_pos: int64 scalar N_pos to divide by instead of the count of ``heatmap`` (e.g.
            that of a batch spread over several processes).

    Returns:
        float scalar; deterministic at any thread count.
    """
    p = sigmoid(logits).clamp(1e-4, 1 - 1e-4)
    positive, negative = heatmap.eq(1), heatmap.lt(1)
    zero = p.new_zeros(())
    pos_terms = torch.where(positive, p.log() * (1 - p) ** 2, zero)
    neg_terms = torch.where(negative, (1 - p).log() * p**2 * (1 - heatmap) ** 4, zero)
    sums = column_sum(torch.stack([pos_terms.reshape(-1), neg_terms.reshape(-1)], dim=1))  # [2]
    num_pos = (positive.sum() if num_pos is None else num_pos).clamp_min(1).to(p.dtype)
    return -(sums[0] + sums[1]) / num_pos


def box_regression_loss(box_maps: Tensor, target: CenterTargets, num_objects: Tensor | None = None) -> Tensor:
    """Masked L1 loss of the box code at the objects' cells (OpenPCDet RegLossCenterNet).

    Args:
        box_maps: float [B, 10, H, W], the regression sub-heads concatenated in
            :data:`REGRESSION_HEADS` order.
        target: the head's targets (inds, mask, boxes); NaN target values are left out.
        num_objects: int64 scalar to divide by instead of the object count of
            ``target.mask`` (e.g. that of a batch spread over several processes).

    Returns:
        float [10]: per code channel, the sum over samples and objects of |pred - target|,
        divided by max(number of objects, 1). Deterministic at any thread count.
    """
    batch, code_size = box_maps.shape[:2]
    flat = box_maps.reshape(batch, code_size, -1)  # [B, 10, H*W]
    index = target.inds[:, None, :].expand(-1, code_size, -1)
    pred = flat.gather(2, index).transpose(1, 2)  # [B, max_objs, 10]
    valid = target.mask[..., None] & ~target.boxes.isnan()
    # NaN targets are replaced before the subtraction, so no NaN reaches the gradient.
    diff = torch.where(valid, pred - torch.where(valid, target.boxes, 0.0), 0.0)
    num = (target.mask.sum() if num_objects is None else num_objects).clamp_min(1).to(box_maps.dtype)
    return column_sum(diff.abs().reshape(-1, code_size)) / num
