"""nbgrader configuration: the repository itself is a valid nbgrader course root.

solutions/<id>/<id>.ipynb is nbgrader's source notebook and assignments/<id>/<id>.ipynb its
release; an instructor's per-class folders (submitted/, autograded/, feedback/, gradebook.db)
live in their own course directory (see the instructor guide) or are ignored by git here.
"""
c = get_config()  # noqa: F821 (nbgrader provides get_config)

c.CourseDirectory.course_id = "object-detection"
c.CourseDirectory.source_directory = "solutions"
c.CourseDirectory.release_directory = "assignments"
c.CourseDirectory.db_url = "sqlite:///gradebook.db"

c.ClearSolutions.code_stub = {"python": "# YOUR CODE HERE\nraise NotImplementedError()"}
c.ClearSolutions.text_stub = "YOUR ANSWER HERE"
c.Execute.timeout = 300
