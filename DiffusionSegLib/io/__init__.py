"""Files in and out: volumes and pictures (SimpleITK), what a file really is, labelled image
folders, the evidence bundle beside a labelmap, and the atomic, verified writes behind every
output (nothing is renamed into place before it is complete).

images        read_volume / Volume, write_labelmap / stage_labelmap
dicom_series  a DICOM folder read on its exact grid (input_checks: what is refused or corrected)
dicom_seg     a result as a DICOM SEG (highdicom), read back to verify; terminology: its codes
formats       picture formats, sniffing a file's real type, label palettes
datasets      image/mask folders paired by case (evaluate, training, batch)
bundle        the result bundle: proposals, scores, evidence maps next to the labelmap
output_files  staged writes, claims, verified rename, cleanup on cancel
"""
