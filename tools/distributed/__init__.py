"""Tools as Ray actors: the driver keeps the loop, the runtime and the store; editors, judges and critics given
``workers=N`` run as N long-lived async actors on a Ray cluster (the ``ray`` extra).

- ``cluster``: connect to a cluster (or start a local one), record it for run.json, clean up after the run;
- ``host``: the actor side, which builds, loads and calls the tool inside the actor;
- ``actor_tool``: the driver side, a stand-in with the tool's protocol, name and identity that sends each call to
  the actor with the most free capacity, and turns an actor lost mid-call into a transient error;
- ``calls``: which Ray errors mean an actor was lost, and waiting for a free or restarted actor;
- ``shipping``: images in requests travel as arrays, put in the object store once.
"""
