"""DiffusionSegLib: diffusion-model segmentation of medical images.

The backend of the DiffusionSeg 3D Slicer extension. It never imports slicer, qt or vtk and
imports torch only when a job runs, so the Slicer panel can read method metadata cheaply.
"""

__version__ = "0.1.0"
