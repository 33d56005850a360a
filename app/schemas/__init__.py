"""The API's request and response schemas (pydantic), apart from the tables in `app.models`."""
