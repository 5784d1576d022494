"""orthovision-cli: JPEG/TIFF orthodontic photographs and film scans to standards-conformant DICOM."""

__version__ = "0.1.0"
