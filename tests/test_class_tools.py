"""The instructor's tools after `class`, on one generated a01-colab class graded once by the real
command: the similarity report (planted copies above every independent pair, a copy of public
code found with --against, odd notebooks skipped in words, student text escaped), the class
report page, Canvas's gradebook CSV, and nbgrader's formgrader driven in headless Chromium
(a manual grade and a comment survive a second `class` run, in the page and in `nbgrader export`)."""
import csv
import html
import itertools
import json
import re
import shutil
import socket
import subprocess
import sys
import textwrap
import time
import zipfile

import nbformat
import pytest
from nbgrader.api import Gradebook

from autograder import lms, similarity
from coursetools.release import nbgrader_env
from tests.conftest import ROOT
from tests.notebook_grading import student_notebook
from tests.test_a01_colab import DIFFERENT_BUT_RIGHT

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("class-tools")]
ASSIGNMENT = "a01-colab"

# Independent answers, each written its own way (ada has the reference, cleo the project's
# different-but-right answers).
ENV_DAN = '''
def environment_report() -> dict:
    """The facts of this runtime."""
    facts = {"python": platform.python_version(), "torch": torch.__version__, "cuda": torch.version.cuda}
    facts["cpu_count"] = os.cpu_count()
    try:
        release = open("/etc/os-release").read().splitlines()
        pretty = [line.split("=", 1)[1].strip('"') for line in release if line.startswith("PRETTY_NAME=")]
        facts["os"] = pretty[0] if pretty else platform.platform()
    except OSError:
        facts["os"] = platform.platform()
    model = None
    if os.path.exists("/proc/cpuinfo"):
        for row in open("/proc/cpuinfo"):
            if row.lower().startswith("model name"):
                model = row.split(":")[1].strip()
                break
    facts["cpu_model"] = model or platform.processor() or "unknown"
    kib = None
    if os.path.exists("/proc/meminfo"):
        with open("/proc/meminfo") as handle:
            kib = next((int(r.split()[1]) for r in handle if r.startswith("MemTotal")), None)
    total = kib * 1024 if kib else os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    facts["ram_gb"] = round(total / 1024 ** 3, 2)
    facts["gpu"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return facts
'''
ENV_EVE = '''
def environment_report() -> dict:
    def grep(path, prefix, sep):
        if not os.path.isfile(path):
            return None
        with open(path, encoding="utf-8", errors="replace") as f:
            for text in f:
                if text.startswith(prefix):
                    return text.split(sep, 1)[-1].strip().strip('"')
        return None

    ram = grep("/proc/meminfo", "MemTotal", ":")
    ram_bytes = int(ram.split()[0]) << 10 if ram else os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    gpu = None
    if torch.cuda.is_available():
        gpu = torch.cuda.get_device_name(torch.cuda.current_device())
    report = dict(
        python="{}.{}.{}".format(*platform.python_version_tuple()),
        os=grep("/etc/os-release", "PRETTY_NAME", "=") or (platform.system() + " " + platform.release()),
        cpu_model=grep("/proc/cpuinfo", "model name", ":") or platform.processor() or "unknown",
        cpu_count=os.cpu_count(),
        ram_gb=round(ram_bytes / 2 ** 30, 2),
        gpu=gpu,
        torch=torch.__version__,
        cuda=torch.version.cuda,
    )
    return report
'''
TIME_DAN = '''
def time_matmul(n: int, device) -> float:
    """Median seconds of one product."""
    dev = torch.device(device)
    left = torch.rand((n, n), device=dev)
    right = torch.rand((n, n), device=dev)
    samples = []
    torch.matmul(left, right)  # warm-up
    for attempt in range(6):
        if dev.type == "cuda":
            torch.cuda.synchronize()
        began = time.time()
        torch.matmul(left, right)
        if dev.type == "cuda":
            torch.cuda.synchronize()
        if attempt:
            samples.append(time.time() - began)
    samples.sort()
    return float(samples[len(samples) // 2])
'''
TIME_EVE = '''
def time_matmul(n: int, device) -> float:
    device = torch.device(device)
    cuda = device.type == "cuda"
    m1, m2 = (torch.randn(n, n, device=device) for _ in range(2))

    def once():
        if cuda:
            torch.cuda.synchronize(device)
        t0 = time.perf_counter_ns()
        _ = m1 @ m2
        if cuda:
            torch.cuda.synchronize(device)
        return (time.perf_counter_ns() - t0) / 1e9

    once()
    return float(statistics.median([once() for _ in range(5)]))
'''

# Planted copies: every name changed, independent statements moved, comments added.
ENV_BEN = '''
def environment_report() -> dict:
    """The facts of this runtime: see the table above for keys, types and fallbacks."""
    def lookup(filename, wanted, sep):
        # read the file line by line and find the key
        try:
            with open(filename) as fh:
                for ln in fh:
                    k, ok, val = ln.partition(sep)
                    if ok and k.strip() == wanted:
                        return val.strip().strip('"')
        except OSError:
            pass  # no such file on this system
        return None

    gpu_there = torch.cuda.is_available()          # moved up
    memory = lookup("/proc/meminfo", "MemTotal", ":")
    processor = lookup("/proc/cpuinfo", "model name", ":") or platform.processor() or "unknown"
    system = lookup("/etc/os-release", "PRETTY_NAME", "=")
    if memory is not None:
        total_bytes = int(memory.split()[0]) * 1024
    else:
        total_bytes = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    # the answer
    return {
        "python": platform.python_version(),
        "os": system or f"{platform.system()} {platform.release()}",
        "cpu_model": processor,
        "cpu_count": os.cpu_count(),
        "ram_gb": round(total_bytes / 2**30, 2),
        "gpu": torch.cuda.get_device_name(0) if gpu_there else None,
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
    }
'''
TIME_BEN = '''
def time_matmul(n: int, device) -> float:
    # my own timing code
    dev = torch.device(device)

    def sync():
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)

    y = torch.randn(n, n, device=dev)
    x = torch.randn(n, n, device=dev)   # the two operands
    x @ y
    durations = []
    for _ in range(5):
        sync()
        t = time.perf_counter()
        x @ y
        sync()
        durations.append(time.perf_counter() - t)
    return float(statistics.median(durations))
'''
ENV_FAY = '''
def environment_report() -> dict:
    # Collect the facts into one dict.
    info = {"python": platform.python_version(), "torch": torch.__version__, "cuda": torch.version.cuda}
    memory_kib = None
    if os.path.exists("/proc/meminfo"):
        with open("/proc/meminfo") as source:
            memory_kib = next((int(r.split()[1]) for r in source if r.startswith("MemTotal")), None)
    size = memory_kib * 1024 if memory_kib else os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    info["cpu_count"] = os.cpu_count()
    try:
        lines = open("/etc/os-release").read().splitlines()
        names = [entry.split("=", 1)[1].strip('"') for entry in lines if entry.startswith("PRETTY_NAME=")]
        info["os"] = names[0] if names else platform.platform()
    except OSError:  # no os-release
        info["os"] = platform.platform()
    cpu = None
    if os.path.exists("/proc/cpuinfo"):
        for entry in open("/proc/cpuinfo"):
            if entry.lower().startswith("model name"):
                cpu = entry.split(":")[1].strip()
                break
    info["cpu_model"] = cpu or platform.processor() or "unknown"
    info["ram_gb"] = round(size / 1024 ** 3, 2)
    info["gpu"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return info
'''
TIME_FAY = '''
def time_matmul(n: int, device) -> float:
    where = torch.device(device)
    timings = []                     # seconds
    b = torch.rand((n, n), device=where)
    a = torch.rand((n, n), device=where)
    torch.matmul(a, b)
    for k in range(6):
        if where.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.time()
        torch.matmul(a, b)
        if where.type == "cuda":
            torch.cuda.synchronize()
        if k:
            timings.append(time.time() - t0)
    timings.sort()
    return float(timings[len(timings) // 2])
'''
SCRIPT = '</pre><script>alert("ivy")</script>'
TIME_IVY = TIME_EVE.replace("-> float:\n", f'-> float:\n    """{SCRIPT}"""\n', 1)

PLANTED = {("environment_report", "ada", "ben"), ("time_matmul", "ada", "ben"),
           ("environment_report", "dan", "fay"), ("time_matmul", "dan", "fay"), ("time_matmul", "eve", "ivy")}
GROUPS = [{"ada", "ben"}, {"cleo"}, {"dan", "fay"}, {"eve", "ivy"}]  # who shares an origin with whom
CANVAS_IDS = {"ada": "1001", "ben": "1002", "cleo": "1003", "dan": "1004", "eve": "1005", "fay": "1006",
              "ivy": "1007", "hal": "1008"}


def ivy(nb):
    """ivy: eve's time_matmul, no environment_report at all, and a cell the grader refuses."""
    nb.cells = [c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") != "environment-report"]
    nb.cells.append(nbformat.v4.new_code_cell("import ctypes\nlibc = ctypes.CDLL(None)"))
    return nb


@pytest.fixture(scope="module")
def lms_zip(tmp_path_factory):
    answers = {
        "ada": {},
        "ben": {"environment-report": ENV_BEN, "time-matmul": TIME_BEN},
        "cleo": dict(DIFFERENT_BUT_RIGHT),
        "dan": {"environment-report": ENV_DAN, "time-matmul": TIME_DAN},
        "eve": {"environment-report": ENV_EVE, "time-matmul": TIME_EVE},
        "fay": {"environment-report": ENV_FAY, "time-matmul": TIME_FAY},
        "ivy": {"time-matmul": TIME_IVY},
    }
    archive = tmp_path_factory.mktemp("lms") / "submissions.zip"
    with zipfile.ZipFile(archive, "w") as bundle:
        for student, given in answers.items():
            notebook = student_notebook(ROOT, ASSIGNMENT, {k: textwrap.dedent(v) for k, v in given.items()})
            if student == "ivy":
                notebook = ivy(notebook)
            # Canvas's download names: <name>_<canvas user id>_<submission id>_<file>
            bundle.writestr(f"{student}_{CANVAS_IDS[student]}_5{CANVAS_IDS[student]}_{ASSIGNMENT}.ipynb",
                            nbformat.writes(notebook))
        bundle.writestr(f"gus/{ASSIGNMENT}.ipynb", nbformat.writes(student_notebook(ROOT, ASSIGNMENT, fill=False)))
        bundle.writestr(f"hal_1008_51008_{ASSIGNMENT}.ipynb", b"{not a notebook")
    return archive


def run_class(course, archive=None):
    command = [sys.executable, "-m", "autograder", "class", ASSIGNMENT, str(course), "-j", "2"]
    done = subprocess.run(command + (["--zip", str(archive)] if archive else []), cwd=ROOT, capture_output=True,
                          text=True, timeout=900)
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.fixture(scope="module")
def graded(lms_zip, tmp_path_factory):
    """The class graded by the real command; the class report as it was before any similarity run."""
    course = tmp_path_factory.mktemp("course")
    stdout = run_class(course, lms_zip)
    return course, stdout, (course / f"class-report-{ASSIGNMENT}.html").read_text()


@pytest.fixture(scope="module")
def similar(graded, tmp_path_factory):
    """`similarity` run on the graded class, with a folder of public code holding cleo's timing
    function under another name."""
    course = graded[0]
    public = tmp_path_factory.mktemp("public")
    cleo = textwrap.dedent(DIFFERENT_BUT_RIGHT["time-matmul"])
    (public / "benchmarks.py").write_text("import time\nimport torch\n\n\n"
                                          + cleo.replace("def time_matmul(n, device)", "def bench_mm(size, device)")
                                          .replace("(n, n", "(size, size"))
    output = tmp_path_factory.mktemp("report") / "report.html"
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "autograder", "similarity", ASSIGNMENT, str(course), "--against",
                           str(public), "-o", str(output)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    seconds = time.perf_counter() - start
    assert done.returncode == 0, done.stderr
    return output, json.loads(output.with_suffix(".json").read_text()), done.stdout, seconds


def test_the_class_is_graded_as_its_answers_deserve(graded):
    course, stdout, _ = graded
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gradebook:
        scores = {s.student.id: s.score for s in gradebook.assignment_submissions(ASSIGNMENT)}
    assert scores["ada"] == scores["ben"] == scores["cleo"] == 10.0
    assert scores["gus"] == scores["hal"] == 0.0
    assert "flagged: ivy: refused constructs" in stdout and "flagged: hal: unreadable notebook" in stdout
    assert "class report: " in stdout and "grades for Canvas's gradebook import: " in stdout


def test_planted_copies_rank_above_every_independent_pair(similar):
    _, pairs, stdout, seconds = similar
    assert all(set(p) == {"function", "students", "similarity"} and 0.0 <= p["similarity"] <= 1.0 for p in pairs)
    assert [p["similarity"] for p in pairs] == sorted((p["similarity"] for p in pairs), reverse=True)
    scores = {}
    for p in pairs:
        if not any(s.startswith(similarity.AGAINST) for s in p["students"]):
            scores[(p["function"], *sorted(p["students"]))] = p["similarity"]
    planted = {key: scores[key] for key in PLANTED}
    independent = {key: value for key, value in scores.items()
                   if not any({key[1], key[2]} <= group for group in GROUPS)}
    assert min(planted.values()) > max(independent.values()), (planted, independent)
    assert min(planted.values()) >= similarity.LIKELY > max(independent.values())
    # Every pair of students who both wrote code of their own is listed, once.
    for function in ("environment_report", "time_matmul"):
        present = {s for key in scores if key[0] == function for s in key[1:]}
        assert len([k for k in scores if k[0] == function]) == len(list(itertools.combinations(present, 2)))
    assert "1.00  environment_report: ada and ben" in stdout
    print(f"similarity of the graded class: {seconds:.1f} s; planted {planted}; "
          f"highest independent {max(independent.values()):.2f}")


def test_public_code_is_found_and_odd_notebooks_are_skipped_in_words(similar):
    output, pairs, stdout, _ = similar
    against = {p["students"][0]: p["similarity"] for p in pairs
               if p["function"] == "time_matmul" and p["students"][1] == "against:benchmarks.py::bench_mm"}
    assert against["cleo"] == 1.0
    assert all(score < similarity.LIKELY for student, score in against.items() if student != "cleo")
    assert "not compared: gus: `pick_device`: left as released" in stdout
    assert re.search(r"not compared: hal: the notebook is unreadable", stdout)
    assert re.search(r"not compared: ivy: .*`environment_report`: no cell defines it", stdout)
    page = output.read_text()
    assert SCRIPT not in page and html.escape(SCRIPT) in page  # a student's text is shown, never run
    assert not re.search(r"""(src|href)=['"]?(https?:)?//""", page), "the report must open without the network"


def test_the_class_report_shows_scores_failures_flags_and_the_most_similar_pairs(graded, similar):
    course, _, before = graded
    assert "Not run yet" in before
    page = (course / f"class-report-{ASSIGNMENT}.html").read_text()
    assert page.count("src='data:image/png;base64,") == 2  # the histogram and the failure bars
    assert not re.search(r"""(src|href)=['"]?(https?:)?//""", page), "the report must open without the network"
    flagged = page[page.index("Flagged for you"):page.index("Most similar pairs")]
    assert "ivy" in flagged and "refused constructs" in flagged and "hal" in flagged and "unreadable" in flagged
    similar_part = page[page.index("Most similar pairs"):page.index("<h2>Students")]
    assert "ada and ben" in similar_part and "dan and fay" in similar_part
    assert similar[0].name in similar_part  # a link to the whole similarity report
    rates = page[page.index("What students got wrong"):page.index("Points per function")]
    assert "environment_report: keys and types" in rates and " of 9</td>" in rates


def test_canvas_gradebook_csv_has_canvas_header_ids_and_the_gradebook_scores(graded):
    course, _, _ = graded
    with open(course / f"grades-{ASSIGNMENT}-canvas.csv", newline="") as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == lms.CANVAS_HEADER + [ASSIGNMENT]
    assert rows[1][0] == "Points Possible" and float(rows[1][5]) == 10.0
    by_id = {row[1]: row for row in rows[2:]}
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gradebook:
        scores = {s.student.id: s.score for s in gradebook.assignment_submissions(ASSIGNMENT)}
    for student, canvas_id in CANVAS_IDS.items():
        assert float(by_id[canvas_id][5]) == scores[student]
    gus = next(row for row in rows[2:] if row[0] == "gus")
    assert gus[1] == "" and float(gus[5]) == 0.0  # no Canvas ID known: Canvas matches the name


# nbgrader's formgrader in a browser -----------------------------------------------------------

def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.browser
def test_formgrader_manual_grade_and_comment_survive_a_second_class_run(graded, tmp_path):
    from playwright.sync_api import sync_playwright

    from tests.test_browser import ARGS, CHROMIUM

    start = time.perf_counter()
    course = tmp_path / "course"
    shutil.copytree(graded[0], course)
    port, token = free_port(), "formgrader-test-token"
    server = subprocess.Popen(
        [sys.executable, "-m", "jupyter", "server", "--ip=127.0.0.1", f"--port={port}", "--no-browser",
         "--allow-root", f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={course}"],
        cwd=course, env=nbgrader_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    base = f"http://127.0.0.1:{port}"
    comment = "Right idea; see <b>chapter 1</b> on synchronising."
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
            context = browser.new_context(viewport={"width": 1280, "height": 900},
                                          extra_http_headers={"Authorization": f"token {token}"})
            # Only the local server: nbgrader's page asks a CDN for MathJax, which this test refuses.
            context.route("**/*", lambda route: route.continue_() if route.request.url.startswith(base)
                          else route.abort())
            page = context.new_page()
            failures = []
            page.on("response", lambda r: failures.append(f"HTTP {r.status} {r.url}") if r.status >= 400 else None)
            deadline = time.monotonic() + 60
            while True:
                try:
                    page.goto(f"{base}/formgrader/gradebook/{ASSIGNMENT}/{ASSIGNMENT}", wait_until="networkidle")
                    break
                except Exception:
                    if time.monotonic() > deadline or server.poll() is not None:
                        raise
                    time.sleep(0.5)
            page.locator("#toggle_names").click()
            page.locator("a.name-shown", has_text="dan").click()
            page.wait_for_load_state("networkidle")
            with page.expect_response(lambda r: "/formgrader/api/grade/" in r.url and r.request.method == "PUT") as saved:
                page.locator("input#test-pick-device").fill("1.5")
                page.locator("input#test-pick-device").press("Tab")
            assert saved.value.ok
            with page.expect_response(lambda r: "/formgrader/api/comment/" in r.url and r.request.method == "PUT") as saved:
                page.locator("textarea#time-matmul-comment").fill(comment)
                page.locator("textarea#time-matmul-comment").press("Tab")
            assert saved.value.ok

            shots = ROOT / "_build" / "screenshots"
            shots.mkdir(parents=True, exist_ok=True)
            report = browser.new_page(viewport={"width": 1100, "height": 900})  # the guide's picture
            report.goto((course / f"class-report-{ASSIGNMENT}.html").as_uri())
            report.screenshot(path=str(shots / "class-report.png"), full_page=True)
            report.close()

            stdout = run_class(course)  # the instructor grades again, e.g. after a late submission
            assert "9 students" in stdout

            page.reload(wait_until="networkidle")
            page.wait_for_function("document.querySelector('input#test-pick-device').value !== ''")
            assert page.locator("input#test-pick-device").input_value() == "1.5"
            assert page.locator("textarea#time-matmul-comment").input_value() == comment
            page.screenshot(path=str(shots / "formgrader.png"))
            assert failures == []
            browser.close()
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gradebook:
        assert gradebook.find_comment("time-matmul", ASSIGNMENT, ASSIGNMENT, "dan").manual_comment == comment
        automatic = gradebook.find_submission(ASSIGNMENT, "dan").score
    done = subprocess.run([sys.executable, "-m", "nbgrader", "export", "--to=export.csv"], cwd=course,
                          env=nbgrader_env(), capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    with open(course / "export.csv") as handle:
        exported = {row["student_id"]: float(row["score"]) for row in csv.DictReader(handle)}
    with open(graded[0] / f"grades-{ASSIGNMENT}.csv") as handle:
        before = {row["student"]: float(row["score"]) for row in csv.DictReader(handle)}
    assert exported["dan"] == automatic == before["dan"] - 2.0 + 1.5  # pick_device's 2 points became 1.5
    with open(course / f"grades-{ASSIGNMENT}-canvas.csv", newline="") as handle:
        canvas = {row[1]: float(row[5]) for row in list(csv.reader(handle))[2:]}
    assert canvas[CANVAS_IDS["dan"]] == exported["dan"]
    print(f"formgrader test: {time.perf_counter() - start:.1f} s")
