"""Photo edits for the classic editor: instruction grammar, pixel operations and measurements."""
