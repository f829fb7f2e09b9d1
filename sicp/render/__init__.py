"""Render the project's Quarto (``.qmd``) reports to HTML and PDF, offline when Quarto is absent."""

from sicp.render.qmd import RenderError
from sicp.render.report import FORMATS, render_report
from sicp.render.writers import html_has_network_urls

__all__ = ["FORMATS", "RenderError", "html_has_network_urls", "render_report"]
