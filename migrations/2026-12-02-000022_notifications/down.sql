DROP TABLE notification_attempts;
DROP TABLE notification_deliveries;
DROP TABLE notification_reactions;
DROP TABLE notification_channels;
