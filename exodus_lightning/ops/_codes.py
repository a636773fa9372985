"""Integer codes passed to the extension; they mirror the enums in extensions/exodus/lif_step.h."""

RESETS = {"subtract": 0, "zero": 1}
GRADIENTS = {"exodus": 0, "slayer": 1}
BACKENDS = ("auto", "extension", "reference")
SURROGATE_GIVEN = -1
