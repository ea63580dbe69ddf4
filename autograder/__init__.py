"""The course's grader: hidden pytest suites run in the grading process against student code
that runs only in isolated worker processes (autograder.sandbox, autograder.worker).

    python -m autograder grade <assignment-id> <notebook.ipynb> --json <results.json>
"""
