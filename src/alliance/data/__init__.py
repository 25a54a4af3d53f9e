"""Study data in: reading any export (:mod:`~alliance.data.io`), the de-identification gate
(:mod:`~alliance.data.deid`, :mod:`~alliance.data.identifiers`, :mod:`~alliance.data.keys`,
:mod:`~alliance.data.ids`), validation against the data contract
(:mod:`~alliance.data.validate`), the tidy analysis dataset and its summary
(:mod:`~alliance.data.steps`, :mod:`~alliance.data.summary`, :mod:`~alliance.data.figures`).
"""
