"""`tr` for the Qt-free panel rules: Slicer's translation function inside the application, the
text unchanged where `slicer.i18n` does not exist (slicer-core, which the tests run on)."""

try:
    from slicer.i18n import tr
except ImportError:  # slicer-core: no application, no translations
    def tr(text: str) -> str:
        return text

__all__ = ["tr"]
