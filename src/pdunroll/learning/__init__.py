"""Learning operators: the training loop (:mod:`.training`), optimizers and schedules
(:mod:`.optimizers`), a run's state (:mod:`.state`), checkpoint and operator files on disk
(:mod:`.checkpoint`), a scikit-learn style estimator (:mod:`.learner`) and learning curves
(:mod:`.plotting`)."""
