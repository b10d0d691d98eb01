"""The DiffusionSeg drawer: what to segment (this file) above the run, status and result part that
stays in view (results.py).

The primary controls come first: the volume, the method, the prompts, the model and Apply. The
research parameters of each method sit under Advanced, with the labels people read and each
parameter's help (the Slicer panel's data/parameter_labels.json and the method specs); every
method's values are kept in their own state keys, so switching methods loses nothing. No logic
here: the buttons call the controller (app.py).
"""

from __future__ import annotations

from trame.widgets import html
from trame.widgets import vuetify3 as v3

from . import results

DEVICES = ("auto", "cuda", "cpu", "mps")
AXES = ("auto", "axial", "coronal", "sagittal")


def paramKey(method: str, name: str) -> str:
    """State key of one method parameter (trame state keys must be identifiers)."""
    return f"ds_p_{method}_{name}"


def initialState(state, methods: dict, presets: dict, terms: list[str]) -> None:
    from DiffusionSegSlicerLib.PanelRules import modelNote, promptHints

    state.setdefault("ds_method_items", [{"value": n, "title": i.label} for n, i in methods.items()])
    state.setdefault("ds_method", "adzus" if "adzus" in methods else next(iter(methods), ""))
    state.setdefault("ds_descriptions", {n: i.description for n, i in methods.items()})
    state.setdefault("ds_prompt_modes", {n: i.prompt for n, i in methods.items()})
    state.setdefault("ds_prompt_notes", {n: promptHints(i, terms).examples for n, i in methods.items()})
    state.setdefault("ds_model_notes", {n: modelNote(i, "") for n, i in methods.items()})
    state.setdefault("ds_prompts", "")
    state.setdefault("ds_model", "")
    state.setdefault("ds_device", "auto")
    state.setdefault("ds_axis", "auto")
    state.setdefault("ds_intensity", "auto")
    state.setdefault("ds_intensity_items", [{"value": k, "title": v} for k, v in presets.items()])
    state.setdefault("ds_server_path", "")
    for name, info in methods.items():
        for param in info.params:
            state.setdefault(paramKey(name, param.name), param.default)
    for key, value in {"ds_running": False, "ds_segments": [], "ds_volume_name": "", "ds_service": "",
                       "ds_download_ready": False, "ds_dicom_ready": False, "ds_is_dicom": False,
                       "ds_dicom_name": "segmentation.seg.dcm", "ds_last_seconds": 0.0, "ds_save_name": "segmentation.seg.nrrd",
                       "ds_can_remove": False, "ds_is_ct": False, "ds_window": "", "ds_preview_slices": 0}.items():
        state.setdefault(key, value)


def _paramField(method: str, param) -> None:
    from DiffusionSegSlicerLib.PanelRules import choiceTitles, parameterLabel

    data = param.to_dict()
    key = paramKey(method, param.name)
    common = {"label": parameterLabel(method, data), "density": "compact", "hide_details": "auto",
              "hint": param.help, "persistent_hint": False, "classes": "mb-2"}
    if param.type == "bool":
        v3.VCheckbox(v_model=(key,), **common)
    elif param.type == "choice":
        items = [{"value": value, "title": title} for value, title in choiceTitles(method, data)]
        v3.VSelect(v_model=(key,), items=(items,), **common)
    elif param.type in ("int", "float"):
        v3.VTextField(v_model_number=(key,), type="number", step=1 if param.type == "int" else "any",
                      min=param.minimum, max=param.maximum, **common)
    else:
        v3.VTextField(v_model=(key,), **common)


def _input(controller) -> None:
    v3.VFileInput(
        label="Open a volume (NRRD, NIfTI, PNG/JPG, DICOM files or a DICOM .zip)",
        multiple=True, density="compact", hide_details=True, prepend_icon="mdi-file-upload",
        disabled=("ds_running || ds_busy",), id="ds-upload",
        change=(f"window.load_files_by_chunks($event.target.files, "
                f"{{ trigger_name: '{controller.uploadTrigger}' }})"),
    )
    if controller.workspace.allowedRoots:
        with html.Div(classes="d-flex", style="gap: 4px;"):
            v3.VTextField(v_model=("ds_server_path",), label="or a path on the server",
                          density="compact", hide_details=True, id="ds-server-path")
            v3.VBtn("Open", click=controller.openServerPath, disabled=("ds_running || ds_busy",), id="ds-open-path",
                    size="small", classes="align-self-center")
    html.Div("Volume: {{ ds_volume_name || 'none' }}", classes="text-body-2", id="ds-volume-name")
    with html.Div(v_if=("ds_is_ct",), classes="d-flex flex-wrap align-center", style="gap: 4px;",
                  id="ds-windows"):
        html.Span("CT window:", classes="text-caption")
        for preset in controller.windowPresets:
            v3.VBtn(preset["title"], size="x-small", id=f"ds-window-{preset['id']}",
                    variant=(f"ds_window === '{preset['id']}' ? 'flat' : 'outlined'",),
                    color=(f"ds_window === '{preset['id']}' ? 'primary' : undefined",),
                    title=f"Window {preset['window']} HU, level {preset['level']} HU",
                    click=(controller.setWindow, f"['{preset['id']}']"))


def _method(methods: dict) -> None:
    v3.VSelect(v_model=("ds_method",), items=("ds_method_items",), label="Method", density="compact",
               hide_details=True, id="ds-method")
    html.Div("{{ ds_descriptions[ds_method] }}", classes="text-caption text-medium-emphasis")
    v3.VTextarea(v_model=("ds_prompts",), label="What to segment (one per line)", rows=2, auto_grow=True,
                 max_rows=4, density="compact", hide_details=True, id="ds-prompts",
                 placeholder="e.g. liver", disabled=("ds_prompt_modes[ds_method] === 'none'",))
    html.Div("{{ ds_prompt_notes[ds_method] }}", v_if=("ds_prompt_notes[ds_method]",),
             classes="text-caption text-medium-emphasis", style="white-space: pre-line;", id="ds-prompt-note")
    v3.VTextField(v_model=("ds_model",), label="Model (empty: the method's default)",
                  density="compact", hide_details=True, id="ds-model")
    html.Div("{{ ds_model_notes[ds_method] }}", v_if=("!ds_model && ds_model_notes[ds_method]",),
             classes="text-caption text-medium-emphasis", id="ds-model-note")


def _advanced(methods: dict) -> None:
    with v3.VExpansionPanels(variant="accordion", id="ds-advanced"), v3.VExpansionPanel(title="Advanced"):
        with v3.VExpansionPanelText():
            v3.VSelect(v_model=("ds_device",), items=(list(DEVICES),), label="Device", density="compact",
                       hide_details="auto", hint="auto: the server's GPU when it has one, else its CPU",
                       classes="mb-2")
            v3.VSelect(v_model=("ds_axis",), items=(list(AXES),), label="Slice axis", density="compact",
                       hide_details="auto", hint="The method segments 2D slices along this axis",
                       classes="mb-2")
            v3.VSelect(v_model=("ds_intensity",), items=("ds_intensity_items",), label="Intensity mapping",
                       density="compact", hide_details="auto", classes="mb-2",
                       hint="How image values become model input: a CT window, MR percentiles, or automatic")
            for name, info in methods.items():
                with html.Div(v_if=(f"ds_method === '{name}'",)):
                    html.Div(f"{info.label} parameters", classes="text-subtitle-2 mt-2 mb-1")
                    for param in info.params:
                        _paramField(name, param)


def build(controller, methods: dict) -> None:
    """Add the drawer's widgets at the current trame layout position."""
    with html.Div(classes="d-flex flex-column", style="height: 100%;", id="ds-panel"):
        with html.Div(classes="pa-2 d-flex flex-column", id="ds-form",
                      style="gap: 6px; overflow-y: auto; flex: 1 1 auto; min-height: 120px;"):
            html.Div("{{ ds_service }}", classes="text-caption text-grey")
            _input(controller)
            _method(methods)
            _advanced(methods)
        with html.Div(classes="pa-2 d-flex flex-column", id="ds-run",
                      style="gap: 6px; flex: 0 0 auto; border-top: 1px solid rgba(128, 128, 128, 0.35);"):
            results.build(controller)
