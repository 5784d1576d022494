"""Patient cards (issue 26): the codes a photograph holds, read with zxing-cpp (Apache-2.0).

Only QR codes, Data Matrix and Code 128, the ones practices print on patient cards; asked only
for photographs nothing else could place (the cost on ordinary photos is nil), on a preview of
about 1000 pixels a side (a card held before the lens fills much of the frame).
"""

from __future__ import annotations

from typing import Any

CARD_PREVIEW_SIDE = 1000


def read_codes(pixels: Any) -> list[str]:
    """The texts of the QR, Data Matrix and Code 128 codes in an RGB (or grey) uint8 array,
    in the decoder's order; none: []."""
    import zxingcpp  # loaded only for a photograph that may be a card

    formats = zxingcpp.barcode_formats_from_str("QRCode,DataMatrix,Code128")
    return [r.text for r in zxingcpp.read_barcodes(pixels, formats=formats) if r.valid and r.text.strip()]
