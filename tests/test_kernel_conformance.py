"""The Jupyter project's own kernel conformance tests (jupyter_kernel_test), run against
the installed `docker` kernelspec over the Jupyter protocol: kernel_info, execution and
its replies, stdout and stderr as separate streams, errors, is_complete, completion,
history and display_data (bash_kernel's display helpers). No engine is needed: the
kernel starts without credentials."""
from __future__ import annotations

import os
import tempfile
import unittest

import jupyter_kernel_test


class DockerKernelConformance(jupyter_kernel_test.KernelTests):
    kernel_name = "docker"
    language_name = "bash"
    file_extension = ".sh"

    code_hello_world = "echo 'hello, world'"
    code_stderr = "echo 'something went wrong' >&2"
    code_generate_error = "false"
    # bash_kernel's helpers: what is piped in becomes display_data.
    code_display_data = ({"code": "printf '<b>whale</b>' | displayHTML", "mime": "text/html"},)
    # A redraw (what docker pull does to its progress lines) is a clear_output.
    code_clear_output = r"printf 'Pulling fs layer\n'; sleep 0.3; printf '\033[1A\033[2KPull complete\n'"
    code_inspect_sample = "docker run"
    completion_samples = ({"text": "ech", "matches": {"echo"}},)
    complete_code_samples = ("echo hi", "for i in 1 2; do echo $i; done")
    incomplete_code_samples = ("for i in 1 2; do", "echo 'unclosed", "if true; then")
    invalid_code_samples = ("fi", "done")

    # Not applicable to bash, so not run (rather than skipped): bash has no result
    # values (everything is a stream, so no execute_result), jupyter_kernel_test checks
    # history only through execute_result samples, and no command opens a pager payload.
    test_execute_result = None
    test_history = None
    test_pager = None

    def test_help_under_the_cursor(self):
        """Shift+Tab: `docker run --help` on a docker line, bash's help for a builtin."""
        for code, cursor, words in (("docker run -d busybox", 8, "Usage:  docker run"),
                                    ("docker container ls -a", 18, "Usage:  docker container ls"),
                                    ("cd /tmp", 1, "cd: cd [-L|[-P [-e]] [-@]] [dir]")):
            self.flush_channels()
            self.kc.inspect(code, cursor)
            reply = self.get_non_kernel_info_reply(timeout=15)
            assert reply["content"]["found"], code
            assert words in reply["content"]["data"]["text/plain"]

    @classmethod
    def setUpClass(cls):
        # A store with nothing installed: the kernel says so, and runs bash all the same.
        cls._tmp = tempfile.TemporaryDirectory(prefix="whale-conformance-")
        cls._saved = os.environ.get("WHALE_CREDENTIALS")
        os.environ["WHALE_CREDENTIALS"] = os.path.join(cls._tmp.name, "credentials")
        super().setUpClass()

    @classmethod
    def tearDownClass(cls):
        super().tearDownClass()
        if cls._saved is None:
            os.environ.pop("WHALE_CREDENTIALS", None)
        else:
            os.environ["WHALE_CREDENTIALS"] = cls._saved
        cls._tmp.cleanup()


if __name__ == "__main__":
    unittest.main()
