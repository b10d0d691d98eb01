"""The part of the drawer that stays in view: Apply and Cancel, the status of the job (one line for
people, slices with elapsed time and an estimate, the stage, warnings, an error with what to do),
the busy line, and the result — its segments, the threshold slider and the evidence with its
legend, Save and Download under one file name, "Edit in Segment Editor" and "Remove result". The
request and other details are in the log dialog, never in the status line.
"""

from __future__ import annotations

from trame.widgets import html
from trame.widgets import vuetify3 as v3


def build(controller) -> None:
    with html.Div(classes="d-flex", style="gap: 4px;"):
        # The typed fields go with the click: trame's client holds state changes back while a request
        # is pending but sends a click at once, so the server could otherwise start the job with
        # the prompt or model from before the last keystrokes.
        v3.VBtn("Apply", color="primary", click=(controller.apply, "[ds_method, ds_prompts, ds_model]"), id="ds-apply",
                disabled=("ds_running || ds_busy || !ds_volume_name",))
        v3.VBtn("Cancel", click=controller.cancel, id="ds-cancel", disabled=("!ds_running",))
        v3.VSpacer()
        v3.VBtn("Log", size="small", variant="text", prepend_icon="mdi-text-box-outline", id="ds-log-button",
                disabled=("!ds_log.length",), click="ds_log_open = true")
    _status()
    _busy()
    _result(controller)
    _logDialog()


def _status() -> None:
    with html.Div(id="ds-status", v_if=("ds_status.state !== 'idle' || ds_status.message",)):
        html.Div("{{ ds_status.message }}", classes="text-body-2", id="ds-message")
        with html.Div(v_if=("ds_status.active",)):
            v3.VProgressLinear(model_value=("ds_status.percent || 0",), height=6, color="primary",
                               indeterminate=("ds_status.percent === null",), classes="my-1", id="ds-progress")
            html.Div("{{ ds_status.line }}", classes="text-caption", id="ds-progress-line")
        html.Div("{{ ds_status.stage }}", v_if=("ds_status.stage",), classes="text-caption text-medium-emphasis",
                 id="ds-stage")
        with html.Div(v_if=("ds_status.warnings.length",), id="ds-warnings"):
            v3.VAlert(v_for="(warning, index) in ds_status.warnings", key="index", text=("warning",),
                      type="warning", density="compact", variant="tonal", classes="my-1 text-body-2")
        with v3.VAlert(v_if=("ds_status.error",), type="error", density="compact", variant="tonal",
                       classes="my-1 text-body-2", id="ds-error"):
            html.Div("{{ ds_status.error }}")
            html.Div("{{ ds_status.hint }}", classes="text-caption mt-1", id="ds-hint")


def _busy() -> None:
    with html.Div(v_if=("ds_busy",), classes="d-flex align-center text-caption", style="gap: 6px;", id="ds-busy"):
        v3.VProgressCircular(indeterminate=True, size=14, width=2)
        html.Span("{{ ds_busy }}")


def _result(controller) -> None:
    with html.Div(v_if=("ds_segments.length",), id="ds-segments"):
        html.Div("Segments", classes="text-subtitle-2")
        with html.Div(v_for="segment in ds_segments", key="segment.id",
                      classes="d-flex align-center text-body-2", style="gap: 6px;"):
            html.Span(style=("{ background: segment.color, width: '12px', height: '12px', "
                             "display: 'inline-block', borderRadius: '2px' }",))
            html.Span("{{ segment.name }}: {{ segment.voxels.toLocaleString() }} voxels")
    _selection(controller.selection)
    with html.Div(v_if=("ds_segments.length",), classes="d-flex flex-wrap", style="gap: 4px;", id="ds-actions"):
        v3.VBtn("Save", click=controller.save, id="ds-save", size="small", prepend_icon="mdi-content-save",
                title=("'Save the segmentation as ' + ds_save_name + (ds_is_dicom ? ' and as a DICOM SEG' : '')",),
                disabled=("ds_running || !!ds_busy",))
        v3.VBtn("Download {{ ds_save_name }}", id="ds-download", size="small", v_if=("ds_download_ready",),
                prepend_icon="mdi-download",
                click=(f"utils.download(ds_save_name, trigger('{controller.downloadTrigger}'), "
                       f"'application/octet-stream')"))
        v3.VBtn("Download DICOM SEG", id="ds-download-dicom", size="small", v_if=("ds_dicom_ready",),
                prepend_icon="mdi-hospital-building", title=("'A DICOM SEG of the series, for the PACS: ' + ds_dicom_name",),
                click=(f"utils.download(ds_dicom_name, trigger('{controller.dicomDownloadTrigger}'), "
                       f"'application/dicom')"))
        v3.VBtn("Edit in Segment Editor", click=controller.showSegmentEditor, size="small", id="ds-edit",
                prepend_icon="mdi-brush", disabled=("ds_running",))
        v3.VBtn("Remove result", click=controller.removeResult, size="small", id="ds-remove",
                prepend_icon="mdi-undo-variant", v_if=("ds_can_remove",), disabled=("ds_running || !!ds_busy",),
                title="Remove the segments and evidence the last job added (other segments are kept)")


def _selection(selection) -> None:
    """Evidence overlay with its legend, and re-selection of the last result (selection.py)."""
    with html.Div(v_if=("ds_sel_kind || ds_sel_has_overlay",), id="ds-selection"):
        with html.Div(v_if=("ds_sel_kind",), id="ds-threshold"):
            v3.VSlider(v_model=("ds_sel_value",), min=("ds_sel_min",), max=("ds_sel_max",),
                       step=("ds_sel_step",), thumb_label=True, density="compact", hide_details=True,
                       label=("ds_sel_kind === 'votes' ? 'Vote threshold' : 'Probability threshold'",),
                       disabled=("ds_running || !!ds_busy",), id="ds-sel-slider",
                       end=(selection.setValue, "[$event]"))
        html.Div("The job used {{ ds_sel_default.toFixed(2) }}; higher keeps fewer regions.",
                 v_if=("ds_sel_kind === 'votes'",), classes="text-caption")
        with html.Div(classes="d-flex flex-wrap", style="gap: 4px;"):
            # Checkable, as in the Slicer panel: while on, a left click in a slice view toggles the
            # proposal under it (DiffusionSegWeb/clicks.py) instead of the views' own interaction.
            v3.VBtn("Click regions in or out", v_if=("ds_sel_kind === 'votes'",), size="small",
                    title="While on, a click in a slice view adds or removes the region under it",
                    prepend_icon="mdi-cursor-default-click", id="ds-sel-click", active=("ds_sel_click",),
                    color=("ds_sel_click ? 'primary' : undefined",),
                    variant=("ds_sel_click ? 'flat' : 'outlined'",), disabled=("!!ds_busy",),
                    click=(selection.setClickMode, "[!ds_sel_click]"))
            v3.VBtn("Undo", click=selection.undo, size="small", id="ds-sel-undo",
                    disabled=("!ds_sel_can_undo || ds_running || !!ds_busy",))
        html.Div("Click in a slice view: the region under the cursor is added to the result, or removed, "
                 "in every slice where it continues.", v_if=("ds_sel_click",), classes="text-caption")
        html.Div("{{ ds_sel_message }}", classes="text-body-2", id="ds-sel-message")
        v3.VCheckbox(v_model=("ds_sel_overlay",), label="Show the evidence over the image", density="compact",
                     hide_details=True, disabled=("!ds_sel_has_overlay",), id="ds-sel-overlay",
                     update_modelValue=(selection.showOverlay, "[$event]"))
        with html.Div(v_if=("ds_sel_overlay && ds_sel_legend",), id="ds-legend", classes="text-caption"):
            html.Div("{{ ds_sel_legend.title }}", classes="font-weight-medium")
            html.Div(style=("{ background: ds_sel_legend.gradient, height: '10px', borderRadius: '2px' }",))
            with html.Div(classes="d-flex"):
                html.Span("{{ ds_sel_legend.low }}")
                v3.VSpacer()
                html.Span("{{ ds_sel_legend.high }}")
            html.Div("{{ ds_sel_legend.text }}")


def _logDialog() -> None:
    with v3.VDialog(v_model=("ds_log_open",), max_width=900, scrollable=True):
        with v3.VCard(title="Log of the last job"):
            with v3.VCardText():
                html.Pre("{{ ds_log.join('\\n') }}", id="ds-log",
                         style="white-space: pre-wrap; font-size: 12px; max-height: 70vh; overflow-y: auto;")
            with v3.VCardActions():
                v3.VSpacer()
                v3.VBtn("Close", click="ds_log_open = false")
