"""The bottom layer: where and how a run executes (device, seeds, torchrun processes; a run's plan),
files written atomically, and the errors users can cause. Import the submodules directly:
`libs.runtime.errors` and `libs.runtime.files` load without torch."""
