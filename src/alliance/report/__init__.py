"""What every domain presents with: one table model rendered to Markdown, LaTeX, HTML and Word
(:mod:`~alliance.report.tables`), the Methods text (:mod:`~alliance.report.methods_text`),
provenance (:mod:`~alliance.report.provenance`) and the figure style
(:mod:`~alliance.report.style`).
"""
