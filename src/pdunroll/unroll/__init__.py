"""The unrolled solvers and their hand-written reverse modes: the gradient methods
(:mod:`.methods`), the configuration of one gradient (:mod:`.plan`), the Chambolle-Pock forward
pass (:mod:`.forward`) and reverse recursions (:mod:`.reverse`), the fixed-point system of the
implicit gradient (:mod:`.implicit`) and its Krylov solvers (:mod:`.krylov`), and unrolled
forward-backward splitting (:mod:`.splitting`)."""
