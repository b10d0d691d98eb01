"""The zero-shot decision in numpy and scipy only: which proposals are foreground, per slice and
for the whole volume (selection), on the proposals' pieces (proposal_graph), and again later
from a saved bundle without the model (reselection). The Slicer process imports it.
"""
