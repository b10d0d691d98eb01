"""The DiffusionSeg drawer: open a volume, method/prompts/parameters, Apply/Cancel, progress, save.

Built from the backend's method metadata (the same `MethodInfo` the Slicer panel and the CLI build
themselves from): one field per parameter, advanced ones folded away, each method's values kept in
its own state key so switching methods does not lose them. No logic here: the buttons call the
controller.
"""

from __future__ import annotations

from trame.widgets import html
from trame.widgets import vuetify3 as v3

DEVICES = ("auto", "cuda", "cpu", "mps")
AXES = ("auto", "axial", "coronal", "sagittal")


def paramKey(method: str, name: str) -> str:
    """State key of one method parameter (trame state keys must be identifiers)."""
    return f"ds_p_{method}_{name}"


def initialState(state, methods: dict, presets: dict) -> None:
    state.setdefault("ds_method_items", [{"value": n, "title": i.label} for n, i in methods.items()])
    state.setdefault("ds_method", "adzus" if "adzus" in methods else next(iter(methods), ""))
    state.setdefault("ds_descriptions", {n: i.description for n, i in methods.items()})
    state.setdefault("ds_prompt_modes", {n: i.prompt for n, i in methods.items()})
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
    for key, value in {"ds_running": False, "ds_stage": "", "ds_progress": 0, "ds_message": "",
                       "ds_error": "", "ds_segments": [], "ds_volume_name": "", "ds_service": "",
                       "ds_download_ready": False, "ds_last_seconds": 0.0}.items():
        state.setdefault(key, value)


def _paramField(method: str, param) -> None:
    key = paramKey(method, param.name)
    label = param.label or param.name.replace("_", " ")
    common = {"label": label, "density": "compact", "hide_details": "auto", "hint": param.help,
              "classes": "mb-2"}
    if param.type == "bool":
        v3.VCheckbox(v_model=(key,), **common)
    elif param.type == "choice":
        v3.VSelect(v_model=(key,), items=(list(param.choices),), **common)
    elif param.type in ("int", "float"):
        v3.VTextField(v_model_number=(key,), type="number", step=1 if param.type == "int" else "any",
                      min=param.minimum, max=param.maximum, **common)
    else:
        v3.VTextField(v_model=(key,), **common)


def build(controller, methods: dict) -> None:
    """Add the panel's widgets at the current trame layout position."""
    with html.Div(classes="pa-2 d-flex flex-column", style="gap: 6px;"):
        html.Div("DiffusionSeg", classes="text-h6")
        html.Div("{{ ds_service }}", classes="text-caption text-grey")

        # -- input ---------------------------------------------------------------------------
        v3.VFileInput(
            label="Upload a volume (NRRD, NIfTI, PNG/JPG, DICOM files or a DICOM .zip)",
            multiple=True, density="compact", hide_details=True, prepend_icon="mdi-file-upload",
            disabled=("ds_running",), id="ds-upload",
            change=(f"window.load_files_by_chunks($event.target.files, "
                    f"{{ trigger_name: '{controller.uploadTrigger}' }})"),
        )
        with html.Div(classes="d-flex", style="gap: 4px;"):
            v3.VTextField(v_model=("ds_server_path",), label="or a path on the server",
                          density="compact", hide_details=True, id="ds-server-path")
            v3.VBtn("Open", click=controller.openServerPath, disabled=("ds_running",), id="ds-open-path",
                    size="small", classes="align-self-center")
        html.Div("Volume: {{ ds_volume_name || 'none' }}", classes="text-body-2", id="ds-volume-name")

        # -- method, prompts, parameters --------------------------------------------------------
        v3.VSelect(v_model=("ds_method",), items=("ds_method_items",), label="Method", density="compact",
                   hide_details=True, id="ds-method")
        html.Div("{{ ds_descriptions[ds_method] }}", classes="text-caption")
        v3.VTextarea(v_model=("ds_prompts",), label="Prompts (one per line)", rows=2, auto_grow=True,
                     density="compact", hide_details=True, id="ds-prompts",
                     disabled=("ds_prompt_modes[ds_method] === 'none'",))
        v3.VTextField(v_model=("ds_model",), label="Model (empty: the method's default)",
                      density="compact", hide_details=True, id="ds-model")
        for name, info in methods.items():
            with html.Div(v_if=(f"ds_method === '{name}'",)):
                for param in info.params:
                    if not param.advanced:
                        _paramField(name, param)
                with v3.VExpansionPanels(variant="accordion"), v3.VExpansionPanel(title="Advanced"):
                    with v3.VExpansionPanelText():
                        v3.VSelect(v_model=("ds_device",), items=(list(DEVICES),), label="Device",
                                   density="compact", hide_details=True, classes="mb-2")
                        v3.VSelect(v_model=("ds_axis",), items=(list(AXES),), label="Slice axis",
                                   density="compact", hide_details=True, classes="mb-2")
                        v3.VSelect(v_model=("ds_intensity",), items=("ds_intensity_items",),
                                   label="Intensity", density="compact", hide_details=True, classes="mb-2")
                        for param in info.params:
                            if param.advanced:
                                _paramField(name, param)

        # -- run ---------------------------------------------------------------------------------
        with html.Div(classes="d-flex", style="gap: 4px;"):
            v3.VBtn("Apply", color="primary", click=controller.apply, id="ds-apply",
                    disabled=("ds_running || !ds_volume_name",))
            v3.VBtn("Cancel", click=controller.cancel, id="ds-cancel", disabled=("!ds_running",))
        v3.VProgressLinear(model_value=("ds_progress",), height=6, color="primary",
                           indeterminate=("ds_running && ds_progress === 0",), v_show=("ds_running",))
        html.Div("{{ ds_stage }}", classes="text-caption", id="ds-stage")
        html.Div("{{ ds_message }}", classes="text-body-2", id="ds-message")
        v3.VAlert(text=("ds_error",), type="error", density="compact", v_if=("ds_error",), id="ds-error")

        # -- result ------------------------------------------------------------------------------
        with html.Div(v_if=("ds_segments.length",), id="ds-segments"):
            html.Div("Segments", classes="text-subtitle-2")
            with html.Div(v_for="segment in ds_segments", key="segment.id",
                          classes="d-flex align-center text-body-2", style="gap: 6px;"):
                html.Span(style=("{ background: segment.color, width: '12px', height: '12px', "
                                 "display: 'inline-block', borderRadius: '2px' }",))
                html.Span("{{ segment.name }}: {{ segment.voxels }} voxels")
        _selection(controller.selection)
        with html.Div(classes="d-flex", style="gap: 4px;"):
            v3.VBtn("Save .seg.nrrd", click=controller.save, id="ds-save", size="small",
                    disabled=("!ds_segments.length || ds_running",))
            v3.VBtn("Download", id="ds-download", size="small", disabled=("!ds_download_ready",),
                    click=f"utils.download('{controller.downloadName}', "
                          f"trigger('{controller.downloadTrigger}'), 'application/octet-stream')")


def _selection(selection) -> None:
    """Evidence overlay and re-selection of the last result (DiffusionSegWeb/selection.py)."""
    with html.Div(v_if=("ds_sel_kind || ds_sel_has_overlay",), id="ds-selection"):
        html.Div("Evidence and selection", classes="text-subtitle-2")
        v3.VCheckbox(v_model=("ds_sel_overlay",), label="Show the evidence overlay", density="compact",
                     hide_details=True, disabled=("!ds_sel_has_overlay",), id="ds-sel-overlay",
                     update_modelValue=(selection.showOverlay, "[$event]"))
        v3.VSlider(v_if=("ds_sel_kind",), v_model=("ds_sel_value",), min=("ds_sel_min",), max=("ds_sel_max",),
                   step=("ds_sel_step",), thumb_label=True, density="compact", hide_details=True,
                   label=("ds_sel_kind === 'votes' ? 'Vote threshold' : 'Probability threshold'",),
                   disabled=("ds_running",), id="ds-sel-slider", end=(selection.setValue, "[$event]"))
        html.Div("The job used {{ ds_sel_default.toFixed(2) }}; higher keeps fewer regions.",
                 v_if=("ds_sel_kind === 'votes'",), classes="text-caption")
        with html.Div(classes="d-flex flex-wrap", style="gap: 4px;"):
            # Checkable, as in the Slicer panel: while on, a left click in a slice view toggles the
            # proposal under it (DiffusionSegWeb/clicks.py) instead of the views' own interaction.
            v3.VBtn("Click to add or remove a region", v_if=("ds_sel_kind === 'votes'",), size="small",
                    prepend_icon="mdi-cursor-default-click", id="ds-sel-click", active=("ds_sel_click",),
                    color=("ds_sel_click ? 'primary' : undefined",),
                    variant=("ds_sel_click ? 'flat' : 'outlined'",),
                    click=(selection.setClickMode, "[!ds_sel_click]"))
            v3.VBtn("Undo selection", click=selection.undo, size="small", id="ds-sel-undo",
                    disabled=("!ds_sel_can_undo || ds_running",))
        html.Div("Click in a slice view: the region under the cursor is added to the result, or removed, "
                 "in every slice where it continues.", v_if=("ds_sel_click",), classes="text-caption")
        html.Div("{{ ds_sel_message }}", classes="text-body-2", id="ds-sel-message")
