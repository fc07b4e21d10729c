"""Data shipped with CardVend (translations in locale/, the receipt font in fonts/); a package only
so that the wheel installs it beside app/ (app.resources.resource_dir finds it)."""
