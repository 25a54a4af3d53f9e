"""Scoring of alliance and outcome instruments: instrument keys (:mod:`~alliance.scoring.instruments`),
scale scores (:mod:`~alliance.scoring.scores`), internal consistency
(:mod:`~alliance.scoring.psychometrics`) and reliable and clinically significant change
(:mod:`~alliance.scoring.change`). Steps in :mod:`alliance.scoring.steps`, figures in
:mod:`alliance.scoring.figures`; :mod:`alliance.scoring.select` picks an instrument's scores for
the analysis domains' steps.
"""
