"""The bottom layer: where and how a run executes (device, precision, seeds, torchrun processes),
files written atomically, and the errors users can cause. Import the submodules directly:
`libs.runtime.errors` and `libs.runtime.files` load without torch."""
