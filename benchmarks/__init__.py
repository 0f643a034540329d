"""`make bench`: measured figures for the platform, side by side with raw Playwright.

Not tests: nothing here asserts a timing, and pytest never collects these modules.
"""
