"""Drives a Sluice worker's REST API with a third-party Kafka Connect client (PyPI
kafka-connect-py), unchanged: create, list, status, pause, resume, restart, tasks, plugins,
validate, delete. Exits non-zero (with the failing check) if anything differs from Kafka
Connect's behaviour.

usage: connect_client.py <rest url> <connector name> <topic>
"""
import sys
import time

from kafka_connect import KafkaConnect


def wait(what, check, timeout=90):
    deadline = time.time() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.time() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.3)


def main():
    url, name, topic = sys.argv[1:4]
    kc = KafkaConnect(url=url)
    info = kc.get_cluster_info()
    assert "version" in info and "kafka_cluster_id" in info, info

    created = kc.create_connector({
        "name": name,
        "config": {
            "connector.class": "datagen",
            "tasks.max": "2",
            "topic": topic,
            "rate": "50",
        },
    })
    assert created["name"] == name, created
    assert created["config"]["connector.class"] == "datagen", created

    assert name in kc.list_connectors(), kc.list_connectors()
    expanded = kc.list_connectors(expand="status")
    assert name in expanded, expanded

    def running():
        status = kc.get_connector_status(name)
        tasks = status.get("tasks", [])
        ok = status["connector"]["state"] == "RUNNING" and len(tasks) == 2 and all(
            t["state"] == "RUNNING" for t in tasks)
        return status if ok else None

    status = wait("RUNNING", running)
    assert status["type"] == "source", status

    assert kc.get_connector(name)["type"] == "source"
    assert kc.get_connector_config(name)["topic"] == topic
    tasks = kc.list_connector_tasks(name)
    assert [t["id"]["task"] for t in tasks] == [0, 1], tasks
    assert kc.get_connector_task_status(name, 0)["state"] == "RUNNING"

    kc.pause_connector(name)
    wait("PAUSED", lambda: kc.get_connector_status(name)["connector"]["state"] == "PAUSED")
    kc.resume_connector(name)
    wait("RUNNING again", running)

    restarted = kc.restart_connector(name, include_tasks=True, only_failed=False)
    assert restarted["connector"]["state"] == "RESTARTING", restarted
    wait("RUNNING after restart", running)
    kc.restart_connector_task(name, 1)

    updated = kc.update_connector(name, {
        "connector.class": "datagen", "tasks.max": "1", "topic": topic, "rate": "50"})
    assert updated["name"] == name, updated
    wait("one task", lambda: len(kc.get_connector_status(name)["tasks"]) == 1)

    topics = kc.list_connector_topics(name)
    assert topics[name]["topics"] == [topic], topics

    plugins = kc.list_connector_plugins()
    assert any(p["class"] == "datagen" and p["type"] == "source" for p in plugins), plugins
    validation = kc.validate_connector_config("datagen", {"connector.class": "datagen"})
    assert validation["error_count"] == 1, validation

    kc.delete_connector(name)
    wait("deleted", lambda: name not in kc.list_connectors())
    print("ok")


if __name__ == "__main__":
    main()
