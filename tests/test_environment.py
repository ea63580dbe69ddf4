"""requirements/dev.in, requirements/lock.txt and environment.yml pin the same versions."""
import re

import yaml

from tests.conftest import ROOT


def pins(lines):
    found = {}
    for line in lines:
        line = line.split("#", 1)[0].strip()
        match = re.match(r"^([A-Za-z0-9_.\-\[\]]+)==([^\s;]+)$", line)
        if match:
            found[re.sub(r"[-_.]+", "-", match.group(1)).lower()] = match.group(2)
    return found


def test_lock_environment_and_top_level_agree():
    top = pins((ROOT / "requirements" / "dev.in").read_text().splitlines())
    lock = pins((ROOT / "requirements" / "lock.txt").read_text().splitlines())
    conda = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip_section = next(d["pip"] for d in conda["dependencies"] if isinstance(d, dict) and "pip" in d)
    env = pins(pip_section)
    assert top, "requirements/dev.in pins nothing"
    assert env == top, "environment.yml and requirements/dev.in must list the same pins"
    disagree = {name: (version, lock.get(name)) for name, version in top.items() if lock.get(name) != version}
    assert disagree == {}, "requirements/lock.txt disagrees with requirements/dev.in: run `make lock`"


def test_the_python_versions_agree():
    conda = yaml.safe_load((ROOT / "environment.yml").read_text())
    assert "python=3.11" in conda["dependencies"]
