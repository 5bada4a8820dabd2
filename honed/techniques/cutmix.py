"""CutMix (Yun et al. 2019): paste a random box from the next image and mix labels by its area.

torchvision's `v2.CutMix` draws lam ~ Beta(alpha, alpha), cuts a box of area (1 - lam) from the
next row of the batch into each image, and gives soft targets weighted by the pasted area. Same
mechanics as mixup (see mixup.py): training batches only, probability `p`, torch's global RNG.
"""

from __future__ import annotations

from torchvision.transforms import v2

from honed.proposals import Change, Situation, proposes
from honed.techniques import TECHNIQUES
from honed.techniques.mixup import BatchMix, mixing_applies


class CutMix(BatchMix):
    """Cut-and-paste mixing; alpha 1.0 (the paper's) draws box areas uniformly."""

    name = "cutmix"
    transform = v2.CutMix

    def __init__(self, alpha: float = 1.0, p: float = 1.0) -> None:
        super().__init__(alpha, p)


TECHNIQUES.register("cutmix")(CutMix)


@proposes("techniques")
def _climb_candidates(s: Situation) -> list[Change]:
    if not mixing_applies(s):
        return []
    return [Change("cutmix alpha 1 p 0.5", techniques=[{"name": "cutmix", "alpha": 1.0, "p": 0.5}], group="batch_mix",
                   why="a box pasted from another image, labels mixed by its area: the model must use the whole image")]
