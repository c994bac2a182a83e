"""The API's routers, one per resource: videos (upload, list, status, stream, delete), frames, health."""
