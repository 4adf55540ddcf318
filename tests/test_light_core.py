import subprocess
import sys

HEAVY = ("torch", "diffusers", "transformers", "vllm", "openai", "anthropic", "scipy", "matplotlib")


def test_the_core_and_cli_import_no_heavy_library() -> None:
    code = ("import sys, refine_agent, refine_agent.cli, refine_agent.registry, refine_agent.session; "
            f"print([m for m in {HEAVY!r} if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip() == "[]"
