"""SynthFace: procedurally generated faces with exact ground truth (geometry first; the C
renderer follows)."""
