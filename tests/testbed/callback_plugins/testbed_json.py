# Test-bed stdout callback: the whole playbook run as one JSON document.
# Same layout as ansible.posix.json (plays -> tasks -> hosts -> result, plus
# stats), which ansible-core 2.19 no longer ships. Enable with
#   ANSIBLE_CALLBACK_PLUGINS=tests/testbed/callback_plugins ANSIBLE_STDOUT_CALLBACK=testbed_json
from __future__ import annotations

DOCUMENTATION = """
    name: testbed_json
    type: stdout
    short_description: JSON output for the iommu.host real-kernel test bed
    description:
      - Prints one JSON document at the end of the run (ansible.posix.json layout).
"""

import datetime
import json

from ansible.plugins.callback import CallbackBase

try:
    from ansible.module_utils.common.json import AnsibleJSONEncoder as _Encoder
except ImportError:  # pragma: no cover
    _Encoder = json.JSONEncoder


def _now():
    return datetime.datetime.now(datetime.timezone.utc).isoformat()


def _result_of(result):
    data = getattr(result, "result", None)
    if data is None:
        data = result._result
    return dict(data)


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "stdout"
    CALLBACK_NAME = "testbed_json"

    def __init__(self, display=None):
        super().__init__(display)
        self.results = []

    def _new_play(self, play):
        return {"play": {"name": play.get_name(), "id": str(play._uuid),
                         "duration": {"start": _now()}}, "tasks": []}

    def _new_task(self, task):
        return {"task": {"name": task.get_name(), "id": str(task._uuid), "action": task.action,
                         "duration": {"start": _now()}}, "hosts": {}}

    def v2_playbook_on_play_start(self, play):
        self.results.append(self._new_play(play))

    def v2_playbook_on_task_start(self, task, is_conditional):
        if not self.results:
            self.results.append({"play": {"name": "", "id": ""}, "tasks": []})
        self.results[-1]["tasks"].append(self._new_task(task))

    def v2_playbook_on_handler_task_start(self, task):
        self.v2_playbook_on_task_start(task, False)

    def _record(self, result, **flags):
        data = _result_of(result)
        data.update(flags)
        data["action"] = result.task.action if hasattr(result, "task") else result._task.action
        host = result.host.get_name() if hasattr(result, "host") else result._host.get_name()
        if not self.results or not self.results[-1]["tasks"]:
            return
        task = self.results[-1]["tasks"][-1]
        task["hosts"][host] = data
        task["task"]["duration"]["end"] = _now()

    def v2_runner_on_ok(self, result, **kwargs):
        self._record(result)

    def v2_runner_on_failed(self, result, ignore_errors=False, **kwargs):
        self._record(result, failed=True, ignore_errors=ignore_errors)

    def v2_runner_on_unreachable(self, result, **kwargs):
        self._record(result, unreachable=True)

    def v2_runner_on_skipped(self, result, **kwargs):
        self._record(result, skipped=True)

    def v2_playbook_on_stats(self, stats):
        hosts = sorted(stats.processed.keys())
        output = {
            "plays": self.results,
            "stats": {h: stats.summarize(h) for h in hosts},
            "custom_stats": {h: stats.custom.get(h, {}) for h in hosts},
            "global_custom_stats": stats.custom.get("_run", {}),
        }
        self._display.display(json.dumps(output, cls=_Encoder, indent=2, sort_keys=True))
