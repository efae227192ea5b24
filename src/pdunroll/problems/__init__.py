"""Ready-made problems built on the library: segmentation with TV on the simplex
(:mod:`.segmentation`) and the 1-D toy problem of the Bregman paper (:mod:`.toy`)."""
