"""A small deterministic classifier for the reference service when no model pack is available,
and for tests: colour statistics tell a photograph from a radiograph or film scan."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..labels.local.rules import DEFAULT_COLOUR_RULE, pixel_stats
from ..labels.model import Label, Labels


class ColourRuleClassifier:
    """Photograph (XC) when the preview has colour; a grey image is a radiograph (DX).

    Protocol: an intraoral photograph is dominated by red/pink (mouth, gums), an extraoral one
    is not; radiographs get no protocol. Orientation is reported as upright with low confidence.
    """

    name = "colour-rules"
    version = "1"
    tags = ("modality", "protocol", "orientation")

    def classify(self, image: Any) -> Labels:
        # The photograph/greyscale decision is the default pack's own colour rule.
        rgb = np.asarray(image.preview(128))
        if rgb.ndim == 2:
            rgb = np.repeat(rgb[..., None], 3, axis=2)
        stats = pixel_stats(rgb, DEFAULT_COLOUR_RULE)
        src = self.name
        if stats.colour_share < float(DEFAULT_COLOUR_RULE["photo_min_share"]):
            conf = min(1.0, 0.6 + (0.05 - stats.colour_share) * 8)
            return Labels(
                modality=Label("modality", "DX", conf, src),
                protocol=Label("protocol", None, 0.0, src),
                orientation=Label("orientation", "0", 0.5, src),
            )
        r, g, b = (float(rgb[..., i].astype(np.float32).mean()) for i in range(3))
        intraoral = r > 1.35 * g and r > 1.25 * b
        conf = min(1.0, 0.6 + stats.colour_share)
        return Labels(
            modality=Label("modality", "XC", conf, src),
            protocol=Label("protocol", "intraoral" if intraoral else "extraoral", 0.55, src),
            orientation=Label("orientation", "0", 0.5, src),
        )
