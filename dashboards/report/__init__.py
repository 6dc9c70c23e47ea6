"""服务月报 The monthly (and yearly) service report for the union office, as a printable PDF.

- :mod:`.period`: the calendar month or year in Asia/Shanghai, and the periods it is compared with
- :mod:`.data`: the figures, gathered from the hourly rollups (docs/rollups.md) in InfluxDB
- :mod:`.render`: the PDF (reportlab, the WenQuanYi Micro Hei font embedded, vector charts)
- :mod:`.scheduler`: renders last month's report into a directory when it is missing

docs/reports.md describes the contents and every figure's definition.
"""
