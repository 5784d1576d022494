"""The vocabulary every layer shares: the four tags, Modality and Body Part terms, radiograph
protocols and the 73 ADA-1100 views, each with its DICOM codes.

Plain data read from the CSV tables beside this file (see NOTICE); no DICOM writing here (that is
`dicom.iods.views`), so `labels`, `remote`, `manifest` and `dicom` may all import it.
"""
