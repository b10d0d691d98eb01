"""The "Worker" rows of the Advanced section: warm local server, remote server or one process
per job; the server's state (device, loaded model, memory) with a Stop button; for a remote
server its URL, token and the consent line naming where the volume goes. The work is done by
ServiceManager.py; this file only binds widgets (built here, so the .ui stays as it is). Built
outside the panel and given to it, which then attaches itself (`attach`).
"""

import qt
from slicer.i18n import tr as _

from .ServiceManager import ServiceSettings, consentText, describeHealth

SETTINGS_KEY = "DiffusionSeg/Service"
REFRESH_MS = 3000
MODE_LABELS = (("local", "Warm server on this computer (model stays loaded)"),
               ("remote", "Remote server (the volume is uploaded)"),
               ("off", "New worker process for each job"))


class ServicePanel:
    def __init__(self, ui, logic):
        self.ui, self.logic = ui, logic
        self.panel = None   # Widget.DiffusionSegPanel (its log and busy state), set by attach()
        self._timer = qt.QTimer()
        self._timer.setInterval(REFRESH_MS)
        self._timer.timeout.connect(self.onTimer)
        self._build(ui.advancedCollapsibleButton.layout())

    def attach(self, panel):
        self.panel = panel
        self.logic.serviceManager.log.connect(panel.onJobLog)
        self.refreshState()
        self._timer.start()

    def _build(self, form):
        stored = qt.QSettings()
        self.modeComboBox = qt.QComboBox()
        for mode, label in MODE_LABELS:
            self.modeComboBox.addItem(_(label), mode)
        index = self.modeComboBox.findData(str(stored.value(SETTINGS_KEY + "/mode", "local")))
        self.modeComboBox.setCurrentIndex(max(index, 0))
        self.urlLineEdit = qt.QLineEdit(str(stored.value(SETTINGS_KEY + "/url", "")))
        self.urlLineEdit.placeholderText = "https://gpu-server:8765"
        self.tokenLineEdit = qt.QLineEdit()  # never stored: typed once per session
        self.tokenLineEdit.echoMode = qt.QLineEdit.Password
        self.tokenLineEdit.placeholderText = _("Access token (from the server's token file)")
        self.consentCheckBox = qt.QCheckBox()
        self.consentCheckBox.setStyleSheet("QCheckBox { font-weight: bold; }")
        self.stateLabel = qt.QLabel(_("Server: not running."))
        self.stateLabel.wordWrap = True
        self.stopButton = qt.QPushButton(_("Stop server"))
        self.stopButton.toolTip = _("End the local server and free its memory; the next Apply starts a new one.")
        stateRow = qt.QHBoxLayout()
        stateRow.addWidget(self.stateLabel, 1)
        stateRow.addWidget(self.stopButton)
        form.addRow(_("Worker:"), self.modeComboBox)
        form.addRow(_("Server URL:"), self.urlLineEdit)
        form.addRow(_("Token:"), self.tokenLineEdit)
        form.addRow("", self.consentCheckBox)
        form.addRow(_("Server:"), stateRow)
        self.modeComboBox.currentIndexChanged.connect(self.onChanged)
        self.urlLineEdit.textChanged.connect(self.onChanged)
        self.tokenLineEdit.textChanged.connect(self.onChanged)
        self.consentCheckBox.toggled.connect(self.onChanged)
        self.stopButton.clicked.connect(self.onStop)
        self.onChanged()

    def settings(self):
        return ServiceSettings(mode=self.modeComboBox.currentData or "local", remoteUrl=self.urlLineEdit.text.strip(),
                               remoteToken=self.tokenLineEdit.text.strip(), remoteConsent=self.consentCheckBox.checked)

    def onChanged(self, *_args):
        settings = self.settings()
        remote = settings.mode == "remote"
        for widget in (self.urlLineEdit, self.tokenLineEdit, self.consentCheckBox):
            widget.visible = remote
        if self.consentCheckBox.text != consentText(settings.remoteUrl):
            self.consentCheckBox.checked = False  # a new address needs a new agreement
            self.consentCheckBox.text = consentText(settings.remoteUrl)
            settings = self.settings()
        self.logic.serviceSettings = settings
        stored = qt.QSettings()
        stored.setValue(SETTINGS_KEY + "/mode", settings.mode)
        stored.setValue(SETTINGS_KEY + "/url", settings.remoteUrl)
        self.refreshState()

    def onTimer(self):
        # A remote server is asked only when its settings change: an unreachable host would
        # stall the GUI for the request's timeout at every tick.
        if self.logic.serviceSettings.mode == "local":
            self.refreshState()

    def refreshState(self):
        settings = self.logic.serviceSettings
        manager = self.logic.serviceManager
        if settings.mode == "off":
            text = _("Each job starts its own worker process.")
        elif settings.mode == "remote" and not settings.remoteUrl:
            text = _("Type the server's URL.")
        else:
            text = describeHealth(manager.health(settings))
        self.stateLabel.text = text
        self.stopButton.enabled = manager.isRunning and not (self.panel is not None and self.panel.isSegmenting())

    def onStop(self):
        self.logic.stopService()
        self.refreshState()

    def cleanup(self):
        """Module cleanup (Slicer closing, module reload): the local server ends with it."""
        self._timer.stop()
        if self.panel is not None:
            self.logic.serviceManager.log.disconnect(self.panel.onJobLog)
        self.logic.stopService()
