DROP TABLE topic_consumers;
DROP TABLE subscription_messages;
DROP TABLE subscriptions;
DROP TABLE topic_message_ids;
DROP TABLE topic_messages;
DROP SEQUENCE topic_message_seq;
DROP TABLE topic_grants;
DROP TABLE topics;
