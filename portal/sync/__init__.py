"""Background sync of a connection's record: plan the searches, fetch, store, report progress.

All state is in the database (SyncRun), so any worker process can start, show or resume it.
"""
