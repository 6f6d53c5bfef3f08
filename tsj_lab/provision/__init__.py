"""The story's DDL (plan, apply, validate, maintain) and the layout judgement."""
