"""What pacofr's tests and benchmarks share, importable from anywhere (no ``sys.path`` edits):

- ``torch_ref``: a PyTorch MAE with timm's encoder names, the reference the C engine is checked
  against layer by layer and whole (needs PyTorch);
- ``torch_paco``: the PaCo-FR loss written in PyTorch on top of ``torch_ref`` (needs PyTorch);
- ``bench``: the speed benchmarks' harness (machine header, alternating timing, correctness
  check first, ``--quick``, result files named ``<bench>-<dtype>-<cpu>-<commit>``);
- ``workers``: one worker process per benchmark variant, with dead or hung workers reported;
- ``steps``: the MAE training step of pacofr and of PyTorch on the same batch;
- ``data``: the annotated photos of ``../shared/data`` that tests and benchmarks read.

Nothing here is imported by ``import pacofr``; PyTorch stays a test and benchmark dependency.
"""
