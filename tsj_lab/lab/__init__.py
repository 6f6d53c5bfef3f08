"""What analysts and reports touch: notebook recording, the report runner, plots, the
candle explorer, ad-hoc SQL and the kernel extension."""
