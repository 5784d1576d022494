"""A small deterministic classifier for the reference service when no model pack is available,
and for tests: colour statistics tell a photograph from a radiograph or film scan."""

from __future__ import annotations

from typing import Any

import numpy as np

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
        rgb = np.asarray(image.preview(128), dtype=np.float32)
        if rgb.ndim == 2:
            rgb = np.repeat(rgb[..., None], 3, axis=2)
        mx, mn = rgb.max(axis=2), rgb.min(axis=2)
        saturation = float(np.mean((mx - mn) / np.maximum(mx, 1.0)))
        src = self.name
        if saturation < 0.06:
            conf = min(1.0, 0.6 + (0.06 - saturation) * 6)
            return Labels(
                modality=Label("modality", "DX", conf, src),
                protocol=Label("protocol", None, 0.0, src),
                orientation=Label("orientation", "0", 0.5, src),
            )
        r, g, b = (float(rgb[..., i].mean()) for i in range(3))
        intraoral = r > 1.35 * g and r > 1.25 * b
        conf = min(1.0, 0.6 + saturation)
        return Labels(
            modality=Label("modality", "XC", conf, src),
            protocol=Label("protocol", "intraoral" if intraoral else "extraoral", 0.55, src),
            orientation=Label("orientation", "0", 0.5, src),
        )
